"""Trainings per hour when several trainings share one machine (a benchmark, not a test).

    python benchmarks/throughput.py --concurrent 1 4 12 --epochs 6 [--device cuda]

For each count N, starts N processes at once, each training the ``paper``
preset on the Kang split (CD4T held out, its own seed) for ``--epochs``
epochs, and reads each one's seconds per epoch (median of epochs 2 on).  A
full training is 100 epochs, so N trainings sharing the machine finish about
N x 3600 / (100 x seconds per epoch) trainings an hour; start-up (imports,
data, DEG ranking: a few seconds) is left out and printed apart.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

CHILD = """
import json, sys, time
tic = time.perf_counter()
import torch
torch.set_num_threads({threads})
import scgen_ablation as sa
from scgen_ablation import experiment
adata = sa.load("kang")
config = sa.preset("paper", epochs={epochs}, seed={seed}, device="{device}",
                   early_stopping_patience=None)
split, degs = experiment.prepare(adata, config)
ready = time.perf_counter() - tic
model = sa.train(split.train, config, progress=False)
seconds = [h["seconds"] for h in model.history][1:]
print(json.dumps({{"startup": ready, "epoch": sorted(seconds)[len(seconds) // 2]}}))
"""


def run(n: int, args) -> dict:
    tic = time.perf_counter()
    children = [subprocess.Popen([sys.executable, "-c", CHILD.format(
        threads=args.threads, epochs=args.epochs, seed=i, device=args.device)],
        stdout=subprocess.PIPE, text=True) for i in range(n)]
    results = [json.loads(child.communicate()[0].strip().splitlines()[-1]) for child in children]
    epoch = float(np.median([r["epoch"] for r in results]))
    return {"concurrent": n, "s_per_epoch": epoch, "startup_s": float(np.median([r["startup"] for r in results])),
            "trainings_per_hour": n * 3600 / (100 * epoch), "wall_s": time.perf_counter() - tic}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrent", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    print(f"{'trainings at once':>17} {'s/epoch each':>13} {'trainings/hour':>15} {'start-up s':>11}")
    for n in args.concurrent:
        r = run(n, args)
        print(f"{r['concurrent']:>17} {r['s_per_epoch']:>13.3f} {r['trainings_per_hour']:>15.0f} "
              f"{r['startup_s']:>11.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
