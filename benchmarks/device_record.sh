#!/usr/bin/env bash
# The ablation record's trainings on a machine that has no MLflow, papermill or
# network (a lent GPU machine): only the package's training and scoring run there.
#
#   here:   python -m scgen_ablation.ablation_record --profile full --write-units UNITS
#   there:  benchmarks/device_record.sh UNITS OUT.csv PARALLEL SECONDS
#   here:   python -m scgen_ablation.ablation_record --import-csv OUT.csv
#
# Runs the units PARALLEL at a time in name order, one process each (one CPU
# thread each), starting none after SECONDS; their rows are merged into OUT.csv
# every 15 s and at the end, so a run cut short keeps what finished.
set -u
units=$1; out=$2; parallel=$3; seconds=$4
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1
export PYTHONUNBUFFERED=1 DEADLINE=$(( $(date +%s) + seconds ))
rows=$(mktemp -d); export ROWS=$rows
python=${PYTHON:-python3}; export PYTHON=$python
merge() {
"$python" - "$rows" "$out" <<'PY'
import sys
from pathlib import Path
import pandas as pd
files = sorted(Path(sys.argv[1]).glob("*.csv"))
if files:
    pd.concat([pd.read_csv(f) for f in files], ignore_index=True).to_csv(sys.argv[2] + ".tmp", index=False)
    Path(sys.argv[2] + ".tmp").replace(sys.argv[2])
print(f"{len(files)} units' rows merged into {sys.argv[2]}")
PY
}
(while sleep 15; do merge > /dev/null; done) &
merger=$!
ls "$units"/*.json | xargs -P "$parallel" -I{} sh -c '
  name=$(basename {} .json)
  [ "$(date +%s)" -lt "$DEADLINE" ] || exit 0
  "$PYTHON" -m scgen_ablation.ablation_record --unit {} --out "$ROWS/$name.csv" --threads 1 \
    > "$ROWS/$name.log" 2>&1 && echo "unit $name done at $(date +%T)" || echo "unit $name FAILED: $(tail -1 "$ROWS/$name.log")"'
kill $merger 2>/dev/null
merge
