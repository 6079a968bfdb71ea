"""Throughput of the runner's executors: the same jobs through the local pool and through Ray.

    python benchmarks/executors.py [--executors local ray] [--jobs 2] [--epochs 1]
                                   [--held-out CD4T B NK] [--seeds 0 1] [--threads N]
                                   [--repeats 1]

Runs stage 01 (the plain autoencoder: one training, prediction and scoring per
job) on the Kang split for every held-out cell type x seed given, once per
executor, each time into a fresh temporary MLflow store and training store
(so every job trains), and prints per executor: the wall time of the whole
runner command (Ray's and the tracking server's start included), the time
from the first job's start to the end, jobs (= trainings) per hour on both
clocks, and the machine's load average (1 min) when it ended.  ``--jobs``
jobs run at a time on either executor; Ray reserves one CPU per job.  Torch threads: a Ray job gets OMP_NUM_THREADS = its CPUs (1), a
local job torch's default (every core) unless ``--threads`` sets it for both.
With ``--repeats`` the executors take turns (local, ray, local, ray, ...), so
that a machine busy with other work slows both alike.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(executor: str, args, folder: Path) -> dict:
    store, out = folder / "mlruns", folder / "runs"
    command = [sys.executable, "-m", "scgen_ablation.runner", "--stages", "01_autoencoder",
               "--executor", executor, "--jobs", str(args.jobs),
               "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}", "--out", str(out),
               "-p", "held_out_cell_type", repr(list(args.held_out)),
               "-p", "seed", repr(list(args.seeds)), "-p", "epochs", str(args.epochs),
               "-p", "make_plots", "false"]
    env = {**os.environ, "SCGEN_TRAINING_STORE": str(folder / "trainings")}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    started, first_job, lines = time.perf_counter(), None, []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env) as process:
        for line in process.stdout:
            lines.append(line)
            if first_job is None and line.startswith("[runner] start"):
                first_job = time.perf_counter()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        sys.exit(f"{executor}: the runner exited {process.returncode}:\n{''.join(lines[-40:])}")
    n = len(args.held_out) * len(args.seeds)
    finished = sum(line.startswith("[runner] finished") for line in lines)
    if finished != n:
        sys.exit(f"{executor}: {finished} of {n} jobs finished:\n{''.join(lines[-40:])}")
    jobs_time = wall - (first_job - started)
    return {"executor": executor, "jobs": n, "in parallel": args.jobs,
            "wall s": round(wall, 1), "setup s": round(first_job - started, 1),
            "jobs/hour (wall)": round(n / wall * 3600),
            "jobs/hour (after setup)": round(n / jobs_time * 3600),
            "load at end": round(os.getloadavg()[0], 1)}  # this machine's other work shows here


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executors", nargs="+", default=["local", "ray"],
                        choices=["local", "ray"])
    parser.add_argument("--jobs", type=int, default=2, help="jobs at a time, on either executor")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--held-out", nargs="+", default=["CD4T", "B", "NK"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS for every job on both executors")
    parser.add_argument("--repeats", type=int, default=1, help="runs per executor, taking turns")
    args = parser.parse_args(argv)

    import pandas as pd

    rows = []
    for repeat in range(args.repeats):
        for executor in args.executors:
            with tempfile.TemporaryDirectory(prefix=f"executors-{executor}-") as folder:
                rows.append({"run": repeat + 1, **run_once(executor, args, Path(folder))})
                print(f"{executor}: {rows[-1]['wall s']} s", flush=True)
    print(f"\nstage 01 on the Kang split, {len(args.held_out) * len(args.seeds)} jobs "
          f"(held out {' '.join(args.held_out)} x seeds {' '.join(map(str, args.seeds))}), "
          f"{args.epochs} epoch(s) each; {os.cpu_count()} CPU cores; threads per job: "
          f"{args.threads or 'local: torch default, ray: 1'}\n")
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False))
    if args.repeats > 1:
        print("\nmedians\n")
        print(table.drop(columns="run").groupby("executor", sort=False).median()
              .reset_index().to_markdown(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
