#!/bin/bash
# Train small-data training levers many at a time, one process per (lever, seed,
# cell type), e.g. on a GPU machine (the study's seeds 1-2 of round 3 ran this way
# on one H200, PAR=12):
#
#   PAR=12 SEEDS="1 2" bash benchmarks/parallel_training.sh "200 epochs" "dropout 0.5"
#
# Each process runs benchmarks/small_data.py --levers training --no-mlflow into its
# own CSV; when all are done their rows are appended to $TARGET (default: the
# study's training CSV). Log them to MLflow afterwards, on the machine that keeps
# mlruns/: python benchmarks/small_data.py --log-csv <the rows>.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TARGET=${TARGET:-benchmarks/results/small_data_training.csv}
CELL_TYPES=${CELL_TYPES:-B CD14+Mono CD4T CD8T Dendritic FCGR3A+Mono NK}
work=$(mktemp -d)
for lever in "$@"; do
  for seed in ${SEEDS:-0 1 2}; do
    for cell in $CELL_TYPES; do printf '%s|%s|%s\n' "$lever" "$seed" "$cell"; done
  done
done > "$work/jobs"
echo "$(wc -l < "$work/jobs") trainings, ${PAR:-2} at a time; rows in $work"
export PYTHON work EPOCHS=${EPOCHS:-}
xargs -d '\n' -P "${PAR:-2}" -n 1 bash -c '
  IFS="|" read -r lever seed cell <<< "$0"
  name=$(printf "%s-%s-%s" "$lever" "$cell" "$seed" | tr -c "A-Za-z0-9_.+-" "_")
  if "$PYTHON" benchmarks/small_data.py --levers training --no-mlflow --threads 1 \
       --only "$lever" --seeds "$seed" --cell-types "$cell" --out "$work/$name.csv" ${EPOCHS:+--epochs $EPOCHS} \
       > "$work/$name.log" 2>&1; then echo "done $name"; else echo "FAILED $name: see $work/$name.log"; fi
' < "$work/jobs"
"$PYTHON" - "$work" "$TARGET" <<'PY'
import glob, sys
from pathlib import Path

import pandas as pd

work, target = sys.argv[1], Path(sys.argv[2])
files = sorted(glob.glob(f"{work}/*.csv"))
if not files:
    raise SystemExit("no rows were made")
rows = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
keys = ["cell_type", "seed", "lever", "prediction"]
if target.exists():
    old = pd.read_csv(target)
    if set(old.columns) != set(rows.columns):
        raise SystemExit(f"{target} has columns {list(old.columns)}, the rows {list(rows.columns)}")
    rows = rows[old.columns]
    seen = rows[keys].apply(tuple, axis=1).isin(set(old[keys].apply(tuple, axis=1)))
    rows = rows[~seen]
rows.to_csv(target, mode="a", header=not target.exists(), index=False)
rows.to_csv(f"{work}/new_rows.csv", index=False)
print(f"{len(rows)} new rows appended to {target}; as MLflow runs: "
      f"python benchmarks/small_data.py --log-csv {work}/new_rows.csv")
PY
