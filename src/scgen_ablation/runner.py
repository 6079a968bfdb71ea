"""The ablation runner: executes the stage notebooks with papermill, logs to MLflow.

    python -m scgen_ablation.runner --profile quick          # the main job
    python -m scgen_ablation.runner --profile full --jobs 2

For every job (stage x held-out cell type x seed, as the stage's grid says)
the runner creates the MLflow run, passes its id to the notebook
(``mlflow_run_id``), runs the notebook in its own papermill process, attaches
the executed notebook to the run, and sets the run's final status itself, so a
notebook that raises, or a kernel that dies, still leaves a FAILED run with its
executed notebook.  One failing job does not stop the others; the exit code is
non-zero if any failed.  Jobs already FINISHED with the same configuration are
skipped unless ``--force``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml
from mlflow.tracking import MlflowClient

from . import tracking
from .data import PROJECT_ROOT, resolve_path
from .stages import load_profiles, load_stage, stage_files

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
RUN_DIR = PROJECT_ROOT / "runs"
SUMMARY_METRICS = ("r2_mean_all", "r2_mean_top100", "r2_var_all")


@dataclass
class Job:
    stage: str
    notebook: Path
    parameters: dict
    run_name: str
    last: bool = False  # runs after every other job (the comparison notebook)
    key: str = ""
    run_id: str | None = None
    status: str = "PENDING"
    seconds: float = 0.0
    output: Path | None = None
    error: str = ""
    metrics: dict = field(default_factory=dict)

    def __post_init__(self):
        text = json.dumps({"stage": self.stage, "parameters": self.parameters}, sort_keys=True,
                          default=str)
        self.key = hashlib.sha256(text.encode()).hexdigest()[:16]


def plan(profile_name: str, stages: list[str] | None = None, profiles_path: Path | None = None,
         extra_parameters: dict | None = None) -> list[Job]:
    """The jobs of a profile, in stage order."""
    profiles = load_profiles(profiles_path) if profiles_path else load_profiles()
    if profile_name not in profiles:
        raise KeyError(f"unknown profile {profile_name!r}; profiles: {sorted(profiles)}")
    profile = profiles[profile_name]
    names = stages or profile.get("stages") or list(stage_files())
    jobs = []
    for name in names:
        stage = load_stage(name)
        parameters = {**profile.get("parameters", {}), **stage["parameters"],
                      **profile.get("stage_parameters", {}).get(name, {}),
                      **(extra_parameters or {})}
        notebook = NOTEBOOK_DIR / stage["notebook"]
        last = bool(stage.get("last", False))
        if stage["grid"] == "once":
            grid = [{}]
        elif stage["grid"] == "seed":
            grid = [{"seed": s} for s in profile["seeds"]]
        else:
            grid = [{"held_out_cell_type": h, "seed": s}
                    for h in profile["held_out"] for s in profile["seeds"]]
        for point in grid:
            values = {**parameters, **point}
            label = "-".join(str(point[k]) for k in ("held_out_cell_type", "seed") if k in point)
            jobs.append(Job(name, notebook, values, f"{name}{'-' + label if label else ''}", last))
    return jobs


def finished_runs(client: MlflowClient, experiment_id: str) -> dict[str, str]:
    """job key -> run id of every FINISHED top-level run the runner made."""
    runs = tracking.retry(client.search_runs, [experiment_id],
                          "attributes.status = 'FINISHED' and tags.runner_job_key != ''",
                          max_results=50000)
    return {run.data.tags["runner_job_key"]: run.info.run_id for run in runs}


def execute(job: Job, client: MlflowClient, experiment_id: str, uri: str, experiment: str,
            out_dir: Path, profile: str) -> Job:
    """Run one job's notebook under a run the runner owns."""
    stage_number = job.stage.split("_")[0]
    run = tracking.retry(client.create_run, experiment_id, run_name=job.run_name, tags={
        "stage": stage_number, "stage_name": job.stage, "profile": profile,
        "runner_job_key": job.key, "git_commit": tracking.git_commit(),
        **{k: str(v) for k, v in job.parameters.items() if k in ("held_out_cell_type", "seed")},
    })
    job.run_id = run.info.run_id
    job.output = out_dir / job.stage / f"{job.run_name}.ipynb"
    job.output.parent.mkdir(parents=True, exist_ok=True)
    parameters = {**job.parameters, "mlflow_tracking_uri": uri, "mlflow_experiment": experiment,
                  "mlflow_run_id": job.run_id}
    command = [sys.executable, "-m", "papermill", str(job.notebook), str(job.output),
               "-y", yaml.safe_dump(parameters), "--cwd", str(NOTEBOOK_DIR), "-k", "python3",
               "--no-progress-bar"]
    started = time.perf_counter()
    print(f"[runner] start  {job.run_name}", flush=True)
    try:
        done = subprocess.run(command, capture_output=True, text=True)
        job.status = "FINISHED" if done.returncode == 0 else "FAILED"
        if done.returncode:
            lines = (done.stderr or done.stdout).strip().splitlines()
            job.error = lines[-1][:300] if lines else f"papermill exited {done.returncode}"
    except KeyboardInterrupt:
        job.status = "KILLED"
        raise
    finally:
        job.seconds = time.perf_counter() - started
        if job.output.exists():
            tracking.retry(client.log_artifact, job.run_id, str(job.output), "notebook")
        close_children(client, experiment_id, job.run_id, job.status)
        tracking.retry(client.set_tag, job.run_id, "runner_seconds", f"{job.seconds:.1f}")
        tracking.retry(client.set_terminated, job.run_id, job.status if job.status != "PENDING" else "KILLED")
    job.metrics = tracking.retry(client.get_run, job.run_id).data.metrics
    print(f"[runner] {job.status.lower():8s} {job.run_name} ({job.seconds:.0f} s)"
          + (f": {job.error}" if job.error else ""), flush=True)
    return job


def close_children(client: MlflowClient, experiment_id: str, parent_id: str, status: str) -> None:
    """Nested runs a dead kernel left RUNNING get the parent's final status."""
    children = tracking.retry(client.search_runs, [experiment_id],
                              f"tags.mlflow.parentRunId = '{parent_id}' and attributes.status = 'RUNNING'")
    for child in children:
        tracking.retry(client.set_terminated, child.info.run_id,
                       "FAILED" if status != "FINISHED" else "FINISHED")


def summary(jobs: list[Job]) -> pd.DataFrame:
    """One row per job; a stage that loops over cell types reports their mean (``mean_*``)."""
    def value(metrics: dict, name: str):
        found = metrics.get(name, metrics.get(f"mean_{name}"))
        return None if found is None else round(found, 3)

    rows = [{"stage": j.stage, "run": j.run_name, "status": j.status,
             **{m: value(j.metrics, m) for m in SUMMARY_METRICS}, "seconds": round(j.seconds)}
            for j in jobs]
    return pd.DataFrame(rows)


def run_jobs(jobs: list[Job], *, uri: str | None = None, experiment: str = "kang",
             jobs_in_parallel: int = 1, force: bool = False, out_dir: Path = RUN_DIR,
             profile: str = "custom") -> list[Job]:
    """Execute ``jobs`` (``jobs_in_parallel`` at a time; ``last`` ones after the rest)."""
    uri = tracking.tracking_uri(uri)
    experiment_id = tracking.setup(uri, experiment)  # create store and experiment once, here
    client = MlflowClient(uri)
    done = {} if force else finished_runs(client, experiment_id)
    pending = []
    for job in jobs:
        if job.key in done and not job.last:
            job.status, job.run_id = "SKIPPED", done[job.key]
            job.metrics = tracking.retry(client.get_run, job.run_id).data.metrics
            print(f"[runner] skip   {job.run_name} (finished as run {job.run_id}; --force reruns)")
        else:
            pending.append(job)

    def go(job):
        return execute(job, client, experiment_id, uri, experiment, out_dir, profile)

    for batch in ([j for j in pending if not j.last], [j for j in pending if j.last]):
        with ThreadPoolExecutor(max_workers=max(1, jobs_in_parallel)) as pool:
            list(pool.map(go, batch))
    return jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick", help="profile in the profiles file")
    parser.add_argument("--profiles", type=Path, default=None,
                        help="profiles file (default: ablation/profiles.yaml)")
    parser.add_argument("--stages", nargs="*", help="only these stages (default: the profile's)")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks run in parallel")
    parser.add_argument("--force", action="store_true", help="rerun jobs already finished")
    parser.add_argument("--tracking-uri", default=None, help="default: sqlite in mlruns/")
    parser.add_argument("--experiment", default=None, help="default: the dataset's name")
    parser.add_argument("--out", type=Path, default=None, help="executed notebooks (runs/<profile>)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "YAML_VALUE"), help="extra notebook parameter")
    args = parser.parse_args(argv)

    extra = {name: yaml.safe_load(value) for name, value in args.parameter}
    jobs = plan(args.profile, args.stages, profiles_path=args.profiles, extra_parameters=extra)
    dataset = str(jobs[0].parameters.get("dataset", "kang")) if jobs else "kang"
    experiment = args.experiment or Path(dataset).stem
    if dataset:
        resolve_path(dataset)  # a missing dataset fails here, before any notebook starts
    started = time.perf_counter()
    try:
        run_jobs(jobs, uri=args.tracking_uri, experiment=experiment, jobs_in_parallel=args.jobs,
                 force=args.force, out_dir=args.out or RUN_DIR / args.profile, profile=args.profile)
    except KeyboardInterrupt:
        print("[runner] interrupted; unfinished runs are marked KILLED", file=sys.stderr)
        return 130
    table = summary(jobs)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print("\n" + table.to_string(index=False))
    failed = table["status"].isin(["FAILED", "KILLED"]).sum()
    print(f"\n{len(jobs)} jobs, {failed} failed, {time.perf_counter() - started:.0f} s; "
          f"tracking store: {tracking.tracking_uri(args.tracking_uri)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
