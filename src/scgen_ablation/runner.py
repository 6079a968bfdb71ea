"""The ablation runner's command line: executes the stage notebooks with papermill, logs to MLflow.

    python -m scgen_ablation.runner --profile quick          # the main job
    python -m scgen_ablation.runner --profile full --jobs 2
    python -m scgen_ablation.runner --profile quick --dry-run  # what would run, as JSON lines

What it does lives in three modules, which nothing imports from here:
:mod:`.planning` (profile, stage files and ``-p`` to jobs; the parameter
layers), :mod:`.jobs` (claim, run and close each job; what a run's status
means) and :mod:`.pools` (local child processes or Ray tasks, via
``--executor``).  A bad command line, profile or stage input exits 2 before any
run is made.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import pandas as pd

from . import tracking
from .paths import RUN_DIR
from .store import ENVIRONMENT_VARIABLE as STORE_VARIABLE, TrainingStore
from .planning import UsageError, dry_run, parse_parameters, plan, with_checksums
from .pools import EXECUTORS, RayProcesses, Stop, check_executor, open_executor
from .jobs import run_jobs, summary_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick", help="profile in the profiles file")
    parser.add_argument("--profiles", type=Path, default=None,
                        help="profiles file (default: ablation/profiles.yaml)")
    parser.add_argument("--stages", nargs="*", help="only these stages (default: the profile's)")
    parser.add_argument("--dataset", default=None,
                        help="a registered dataset (data.DATASETS: kang, haber, kang_counts, …) "
                             "or an .h5ad path; the same as -p dataset NAME")
    parser.add_argument("--jobs", type=int, default=None,
                        help="notebooks run in parallel (default: 1; with --executor ray, as "
                             "many as the cluster's CPUs and GPUs fit)")
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local: child processes of the runner (default); ray: Ray tasks "
                             "(needs `make setup-ray`)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster: 'auto' (the one `ray start` runs here), HOST:PORT or "
                             "ray://HOST:PORT (default: a private local Ray instance)")
    parser.add_argument("--cpus-per-job", type=float, default=1,
                        help="CPUs each Ray task reserves (and its torch threads); default 1")
    parser.add_argument("--gpus-per-job", type=float, default=0,
                        help="GPUs each Ray task reserves; a fraction shares one GPU; default 0")
    parser.add_argument("--force", action="store_true", help="rerun jobs already finished")
    parser.add_argument("--dry-run", action="store_true",
                        help="print each job's effective config as a JSON line; run nothing")
    parser.add_argument("--tracking-uri", default=None, help="default: sqlite in mlruns/")
    parser.add_argument("--experiment", default=None, help="default: the dataset's name")
    parser.add_argument("--out", type=Path, default=None, help="executed notebooks (runs/<profile>)")
    parser.add_argument("--store", type=Path, default=None,
                        help="the training store's folder (default: $SCGEN_TRAINING_STORE, "
                             "else mlruns/trainings)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "YAML_VALUE"),
                        help="a notebook parameter or config field (repeatable)")
    args = parser.parse_args(argv)
    if args.store is not None:  # the notebooks (and this process) find it in the environment
        os.environ[STORE_VARIABLE] = str(args.store.resolve())

    try:
        if args.jobs is not None and args.jobs < 1:
            raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
        check_executor(args.executor, args.address, args.cpus_per_job, args.gpus_per_job)
        TrainingStore().check()
        parameters = parse_parameters(args.parameter)
        if args.dataset is not None:
            if "dataset" in parameters:
                raise UsageError("give the dataset once: --dataset or -p dataset")
            parameters["dataset"] = args.dataset
        jobs = with_checksums(plan(args.profile, args.stages, profiles_path=args.profiles,
                                   extra_parameters=parameters))
        if args.dry_run:
            dry_run(jobs, store=TrainingStore())
            return 0
        datasets = {j.config.dataset for j in jobs if j.config}
        experiment = args.experiment or tracking.experiment_for(sorted(datasets)[0] if datasets
                                                                else "kang")
        if len(datasets) > 1 and not args.experiment:
            raise UsageError(f"jobs on several datasets {sorted(datasets)}: run them separately")
        out_dir = (args.out or RUN_DIR / args.profile).resolve()
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"--out {str(out_dir)!r} is a file, not a folder")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(f"--out {str(out_dir)!r} cannot be created: {error}") from None
        uri = tracking.tracking_uri(args.tracking_uri)
        tracking.check_reachable(uri)
    except (UsageError, ConnectionError, OSError) as error:
        print(f"runner: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    executor = contextlib.ExitStack()
    try:
        processes, job_uri = executor.enter_context(open_executor(
            args.executor, uri, args.address, args.cpus_per_job, args.gpus_per_job,
            server_log=out_dir / "mlflow-server.log"))
    except (UsageError, RuntimeError) as error:  # Ray missing or unreachable, server dead
        print(f"runner: {error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Stop):
        return 130
    with executor:  # the Ray instance and the tracking server end here, whatever happens
        parallel = args.jobs or (processes.capacity() if isinstance(processes, RayProcesses)
                                 else 1)
        if isinstance(processes, RayProcesses):
            print(f"[runner] Ray executor: {parallel} job(s) at a time, {args.cpus_per_job:g} "
                  f"CPU and {args.gpus_per_job:g} GPU each", flush=True)
        try:
            run_jobs(jobs, uri=uri, experiment=experiment, jobs_in_parallel=parallel,
                     force=args.force, out_dir=out_dir, profile=args.profile,
                     processes=processes, job_uri=job_uri)
        except tracking.StoreLocked as error:
            print(f"runner: {error}", file=sys.stderr)
            return 2
        except (KeyboardInterrupt, Stop) as error:
            print(f"[runner] stopped ({error or 'SIGINT'}); runs that had started are closed "
                  "KILLED, the rest did not start; run the same command to resume",
                  file=sys.stderr)
            return 130
    table = summary_table(jobs)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print("\n" + table.to_string(index=False))
    failed = table["status"].isin(["FAILED", "KILLED"]).sum()
    print(f"\n{len(jobs)} jobs, {failed} failed, {time.perf_counter() - started:.0f} s; "
          f"tracking store: {uri}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
