#!/usr/bin/env bash
# Everything this project measures on a lent GPU machine, in one command (docs/benchmarks.md):
#   benchmarks/device_check.sh OUT_DIR UNITS_DIR SECONDS (starts no training after that long)
# 1. benchmarks/speed.py on the GPU: both presets against the GPU floor;
# 2. benchmarks/throughput.py: trainings per hour with 1, 4 and 12 sharing the GPU;
# 3. benchmarks/device_record.sh: the ablation record's trainings, 14 at a time.
# The machine needs the package's dependencies (wheels) and the data; see the docs.
set -u
out=$1; units=$2; total=$3
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt"
python3 -c "import torch, scanpy, anndata; print('torch', torch.__version__, 'scanpy', scanpy.__version__, 'anndata', anndata.__version__)" | tee -a "$out/device.txt"
timeout 120 python3 benchmarks/speed.py --device cuda --epochs 5 2>&1 | grep -v Warning | tee "$out/speed_gpu.txt"
timeout 150 python3 benchmarks/throughput.py --device cuda --concurrent 1 4 12 --epochs 6 2>&1 | grep -v Warning | tee "$out/throughput_gpu.txt"
benchmarks/device_record.sh "$units" "$out/ablation_gpu.csv" 14 "$(( total - SECONDS ))" > "$out/record_log.txt" 2>&1
tail -3 "$out/record_log.txt"
