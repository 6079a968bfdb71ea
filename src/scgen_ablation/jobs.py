"""Running jobs: each one claimed, its notebook executed by papermill, its MLflow run closed.

For every job the runner creates the MLflow run, passes its id to the notebook
(``mlflow_run_id``), runs the notebook in its own papermill process, attaches
the executed notebook and papermill's log to the run, and sets the run's
final status itself.  The status is the truth:

* FINISHED only when papermill exited 0, the notebook reached its last line
  (tag ``completed``) and its executed copy was attached; the runner then tags
  ``runner_status=FINISHED`` as its very last write, and only such runs count
  as done (for skipping, and in the comparison);
* FAILED when the notebook raised, the kernel died, or a cleanup step failed;
* KILLED when the runner was interrupted (Ctrl-C, SIGTERM, SIGHUP): it stops
  its papermill processes and closes their runs before it exits.  Papermill
  processes die with the runner even when it is killed outright, and the next
  runner on the store closes what a killed runner left open
  (:func:`tracking.close_orphans`).

A job is claimed (an exclusive lock beside the store) before it runs, so two
runners on one store never run one job twice; jobs already done are skipped
unless ``force``.
"""
from __future__ import annotations

import fcntl
import os
import re
import sys
import time
from pathlib import Path

import pandas as pd
import yaml
from mlflow.tracking import MlflowClient

from . import tracking
from .metrics import HEADLINE_METRICS
from .paths import NOTEBOOK_DIR, RUN_DIR
from .planning import Job, with_checksums
from .pools import Processes, RayProcesses, Stop, run_pool


# --- claims: one job, one runner ---------------------------------------------------------

def claims_dir(uri: str, out_dir: Path) -> Path:
    """Claims live beside a SQLite store (shared by every runner on it), else in the output folder."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).parent / "claims"
    return out_dir / ".claims"


def claim(folder: Path, key: str):
    """An exclusive, non-blocking lock on the job; None if another runner holds it.

    ``flock`` locks die with their process, so a killed runner never leaves a
    stale claim.
    """
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / f"{key}.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


# --- executing one job ---------------------------------------------------------------------

def done_runs(client: MlflowClient, experiment_id: str, key: str | None = None) -> dict[str, str]:
    """job key -> run id of every run its runner closed as FINISHED."""
    query = "attributes.status = 'FINISHED' and tags.runner_status = 'FINISHED'"
    query += f" and tags.runner_job_key = '{key}'" if key else " and tags.runner_job_key != ''"
    runs = tracking.retry(client.search_runs, [experiment_id], query, max_results=50000)
    return {run.data.tags["runner_job_key"]: run.info.run_id for run in runs}


class Context:
    """What every job of one runner shares: the store, the output folder, the live processes."""

    def __init__(self, uri: str, experiment: str, out_dir: Path, profile: str, force: bool,
                 processes: Processes | RayProcesses | None = None, job_uri: str | None = None):
        self.uri, self.experiment, self.out_dir, self.profile = uri, experiment, out_dir, profile
        self.force = force
        self.experiment_id = tracking.setup(uri, experiment)
        self.client = MlflowClient(uri)
        self.claims = claims_dir(uri, out_dir)
        self.processes = processes or Processes()
        self.job_uri = job_uri or uri  # what the notebooks log to (a server's, on Ray)


def execute(job: Job, ctx: Context) -> Job:
    """Claim, run and close one job; never raises for the job's own failures."""
    handle = claim(ctx.claims, job.key)
    if handle is None:
        job.status = "ELSEWHERE"
        print(f"[runner] skip   {job.run_name} (another runner is running it)", flush=True)
        return job
    try:
        if not ctx.force and not job.last:
            found = done_runs(ctx.client, ctx.experiment_id, job.key)
            if found:  # finished by another runner since we looked
                job.status, job.run_id = "SKIPPED", found[job.key]
                return job
        if ctx.processes.stopping.is_set():
            return job
        run_and_close(job, ctx)
    finally:
        handle.close()
    return job


def output_path(out_dir: Path, stage: str, run_name: str) -> Path:
    """Where a job's executed notebook goes: one file per run in the stage's folder, its
    name the run's with a path separator (a cell type such as "T/NK cells") replaced by "_"."""
    return Path(out_dir) / stage / (re.sub(r"[/\\\x00]", "_", run_name) + ".ipynb")


def run_and_close(job: Job, ctx: Context) -> None:
    started = time.perf_counter()
    try:
        run = tracking.retry(ctx.client.create_run, ctx.experiment_id, run_name=job.run_name, tags={
            **tracking.stage_tags(job.stage), "profile": ctx.profile,
            "runner_job_key": job.key, "git_commit": tracking.git_commit(),
            "owner": tracking.owner_tag(), "data_sha256": job.data_sha256,
            **({"training_key": job.training_key} if isinstance(job.training_key, str) else {}),
            **{k: str(v) for k, v in job.parameters.items() if k in ("held_out_cell_type", "seed")},
        })
    except Exception as error:
        job.status, job.error = "FAILED", f"could not create its MLflow run: {error}"
        print(f"[runner] failed   {job.run_name}: {job.error}", flush=True)
        return
    job.run_id = run.info.run_id
    log = None
    try:
        job.output = output_path(ctx.out_dir, job.stage, job.run_name)
        job.output.parent.mkdir(parents=True, exist_ok=True)
        log = job.output.with_suffix(".log")
        parameters = {**job.parameters, "mlflow_tracking_uri": ctx.job_uri,
                      "mlflow_experiment": ctx.experiment, "mlflow_run_id": job.run_id,
                      **({"config": job.config.to_dict()} if job.config is not None else {})}
        command = [sys.executable, "-m", "papermill", str(job.notebook), str(job.output),
                   "-y", yaml.safe_dump(parameters), "--cwd", str(NOTEBOOK_DIR), "-k", "python3",
                   "--no-progress-bar"]
        print(f"[runner] start  {job.run_name}", flush=True)
        # figures show in the executed notebook: let the kernel pick its inline backend
        env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
        code = ctx.processes.run(command, log, env=env)
        if ctx.processes.stopping.is_set() and code != 0:
            job.status, job.error = "KILLED", "the runner was stopped"
        elif code == 0:
            job.status = "FINISHED"
        else:
            job.status = "FAILED"
            job.error = last_error(log) or f"papermill exited {code}"
    except BaseException as error:  # our own failure (disk full, bad folder, ...)
        job.status = "KILLED" if isinstance(error, (KeyboardInterrupt, Stop)) else "FAILED"
        job.error = f"{type(error).__name__}: {error}"
    finally:
        job.seconds = time.perf_counter() - started
        close(job, ctx, log)
    job.metrics = tracking.retry(ctx.client.get_run, job.run_id).data.metrics if \
        job.status == "FINISHED" else {}
    print(f"[runner] {job.status.lower():8s} {job.run_name} ({job.seconds:.0f} s)"
          + (f": {job.error}" if job.error else ""), flush=True)


def last_error(log: Path) -> str:
    """The most telling line of papermill's log: the exception, if one is named."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line[:300]
    return lines[-1][:300] if lines else ""


def close(job: Job, ctx: Context, log: Path | None) -> None:
    """Attach what was produced and write the final status; every step guarded."""
    client, problems = ctx.client, []

    def guarded(what, call, *args):
        try:
            tracking.retry(call, *args)
            return True
        except Exception as error:
            problems.append(f"{what}: {type(error).__name__}: {error}"[:300])
            return False

    html = to_html(job.output) if job.output is not None and job.output.exists() else None
    for path, folder in ((job.output, "notebook"), (html, "notebook"), (log, "logs")):
        if path is not None and path.exists():
            guarded(f"attaching {path.name}", client.log_artifact, job.run_id, str(path), folder)
        elif folder == "notebook" and job.status == "FINISHED":
            problems.append("the executed notebook is missing")
    guarded("closing nested runs", close_children, client, ctx.experiment_id, job.run_id,
            job.status)
    guarded("tagging seconds", client.set_tag, job.run_id, "runner_seconds", f"{job.seconds:.1f}")
    if job.status == "FINISHED":
        try:
            completed = client.get_run(job.run_id).data.tags.get("completed") == "true"
        except Exception as error:
            completed = False
            problems.append(f"reading the run back: {error}")
        if not completed:
            problems.append("the notebook did not reach its end (no 'completed' tag)")
    if job.status == "PENDING":
        job.status = "KILLED"
    if problems and job.status == "FINISHED":
        job.status = "FAILED"
    if problems:
        job.error = "; ".join(filter(None, [job.error, *problems]))[:1000]
    if job.error:
        guarded("tagging the error", client.set_tag, job.run_id, "error", job.error[:5000])
    guarded("setting the status", client.set_terminated, job.run_id, job.status)
    # the last write: only a run with runner_status=FINISHED counts as done
    guarded("marking it closed", client.set_tag, job.run_id, "runner_status", job.status)


def to_html(notebook: Path) -> Path | None:
    """The executed notebook as HTML beside it (MLflow shows HTML, not .ipynb); None if it fails."""
    try:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_filename(str(notebook))
        target = notebook.with_suffix(".html")
        target.write_text(body)
        return target
    except Exception as error:  # a missing HTML copy is a pity, not a failed job
        print(f"[runner] no HTML copy of {notebook.name}: {error}", flush=True)
        return None


def close_children(client: MlflowClient, experiment_id: str, parent_id: str, status: str) -> None:
    """Nested runs a dead kernel left RUNNING get the parent's final status."""
    children = tracking.retry(client.search_runs, [experiment_id],
                              f"tags.mlflow.parentRunId = '{parent_id}' and attributes.status = 'RUNNING'")
    for child in children:
        tracking.retry(client.set_terminated, child.info.run_id,
                       "FAILED" if status != "FINISHED" else "FINISHED")


def summary_table(jobs: list[Job]) -> pd.DataFrame:
    """One row per job; a stage that loops over cell types reports their mean (``mean_*``)."""
    def value(metrics: dict, name: str):
        found = metrics.get(name, metrics.get(f"mean_{name}"))
        return None if found is None else round(found, 3)

    rows = [{"stage": j.stage, "run": j.run_name, "status": j.status,
             **{m: value(j.metrics, m) for m in HEADLINE_METRICS}, "seconds": round(j.seconds)}
            for j in jobs]
    return pd.DataFrame(rows)


def run_jobs(jobs: list[Job], *, uri: str | None = None, experiment: str = "kang",
             jobs_in_parallel: int = 1, force: bool = False, out_dir: Path = RUN_DIR,
             profile: str = "custom", processes: Processes | RayProcesses | None = None,
             job_uri: str | None = None) -> list[Job]:
    """Execute ``jobs`` (``jobs_in_parallel`` at a time; ``last`` ones after the rest).

    Closes the store's orphaned runs first.  On Ctrl-C, SIGTERM or SIGHUP the
    papermill processes are stopped, their runs closed KILLED, and the
    interruption re-raised.  ``processes`` and ``job_uri`` (the tracking URI
    the notebooks get; default ``uri``) come from :func:`open_executor`; by
    default the jobs run as local processes.
    """
    uri = tracking.tracking_uri(uri)
    with_checksums(jobs)
    ctx = Context(uri, experiment, Path(out_dir), profile, force, processes, job_uri)
    closed = tracking.close_orphans(uri)
    if closed:
        print(f"[runner] closed {len(closed)} run(s) left open by processes that no longer "
              f"exist: {', '.join(closed)}", flush=True)
    done = {} if force else done_runs(ctx.client, ctx.experiment_id)
    pending = []
    for job in jobs:
        if job.key in done and not job.last:
            job.status, job.run_id = "SKIPPED", done[job.key]
            job.metrics = tracking.retry(ctx.client.get_run, job.run_id).data.metrics
            print(f"[runner] skip   {job.run_name} (finished as run {job.run_id}; --force reruns)")
        else:
            pending.append(job)

    for batch in ([j for j in pending if not j.last], [j for j in pending if j.last]):
        run_pool(batch, lambda job: execute(job, ctx), jobs_in_parallel, ctx.processes)
    return jobs
