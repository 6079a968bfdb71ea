"""The ablation runner: executes the stage notebooks with papermill, logs to MLflow.

    python -m scgen_ablation.runner --profile quick          # the main job
    python -m scgen_ablation.runner --profile full --jobs 2
    python -m scgen_ablation.runner --profile quick --dry-run  # what would run, as JSON lines

For every job (stage x held-out cell type x seed, as the stage's grid says)
the runner creates the MLflow run, passes its id to the notebook
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
runners on one store never run one job twice.  A job's identity
(``runner_job_key``) is its stage, notebook parameters, effective config and
the sha256 of its data, so changed data or settings rerun; jobs already done
are skipped unless ``--force``.

Parameters reach a notebook in layers, each overriding the one before:
preset -> stage file ``config`` -> profile (``parameters``, then
``stage_parameters``) -> ``-p`` -> ``-p overrides``.  A ``-p`` that is
neither a parameter of a notebook nor a config field is an error (exit 2)
before any run is made.

Jobs run as child processes of the runner (``--executor local``, the
default) or as Ray tasks (``--executor ray``, after ``make setup-ray``):
:func:`open_executor` swaps the processes that :func:`run_pool` runs commands
with, and for Ray serves a local SQLite store through an MLflow server.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import anndata
import pandas as pd
import yaml
from mlflow.tracking import MlflowClient

from . import tracking
from .config import ScGenConfig
from .data import DATASETS, held_out_types, hold_out_problem, resolve_path
from .metrics import HEADLINE_METRICS
from .paths import NOTEBOOK_DIR, RUN_DIR
from .stages import (CONFIG_FIELDS, PROFILES_FILE, StageError, config_layers, load_profiles, load_stage,
                     notebook_parameters, stage_config, variants_of)
from .store import ENVIRONMENT_VARIABLE as STORE_VARIABLE, TrainingStore

# parameters every stage notebook has, which the runner sets itself
RUNNER_PARAMETERS = ("mlflow_tracking_uri", "mlflow_experiment", "mlflow_run_id")


class UsageError(ValueError):
    """Bad command line, profile or stage input: the runner exits 2 before making any run."""


@dataclass
class Job:
    stage: str
    notebook: Path
    parameters: dict
    run_name: str
    config: ScGenConfig | None = None
    data_sha256: str = "unknown"
    last: bool = False  # runs after every other job (the comparison notebook)
    run_id: str | None = None
    status: str = "PENDING"
    seconds: float = 0.0
    output: Path | None = None
    error: str = ""
    metrics: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The job's identity: what decides its result (code aside: ``--force`` after a change)."""
        identity = {"stage": self.stage, "data_sha256": self.data_sha256,
                    "parameters": {k: v for k, v in self.parameters.items()
                                   if k not in RUNNER_PARAMETERS},
                    "config": self.config.to_dict() if self.config else None}
        text = json.dumps(identity, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    cell_types: list[str] = field(default_factory=list)  # held out in turn inside the notebook
    trains: bool = True

    @property
    def training_key(self) -> str | dict | None:
        """What identifies the stage config's trained model; for a stage that loops over
        held-out types, one each (variants aside: see :meth:`variant_configs`)."""
        if not (self.config and self.trains):
            return None
        if not self.cell_types:
            return self.config.training_key(self.data_sha256)
        return {t: self.config.replace(held_out_cell_type=t).training_key(self.data_sha256)
                for t in self.cell_types}

    def variant_configs(self) -> list[tuple[str, ScGenConfig]]:
        """(variant, config) of every result this job makes: each held-out type it loops
        over (or its own) times each variant its notebook runs (:func:`stages.variants_of`)."""
        if not (self.config and self.trains):
            return []
        variants = variants_of(self.stage, self.parameters)
        types = self.cell_types or [self.config.held_out_cell_type]
        return [(name, self.config.replace(held_out_cell_type=t, **changes))
                for t in types for name, changes in variants.items()]

    @property
    def trainings(self) -> set[str]:
        """The training keys this job needs (the training store's keys)."""
        return {config.training_key(self.data_sha256) for _, config in self.variant_configs()}


# --- planning: from profile, stage files and -p to jobs --------------------------------

def is_path_parameter(name: str) -> bool:
    """Parameters that hold a file path: ``dataset``, and names ending in _csv, _path, _results."""
    return name == "dataset" or name.endswith(("_csv", "_path", "_results"))


def resolve_paths(values: dict, base: Path) -> dict:
    """Path parameters given relative are read relative to ``base`` (the caller's folder, or
    the profile file's): notebooks run in notebooks/, so they are passed on absolute."""
    def resolved(name, value):
        if not (is_path_parameter(name) and isinstance(value, str) and value not in DATASETS
                and not Path(value).is_absolute()):
            return value
        candidate = (base / value).expanduser()
        # absolute, links kept: the file's name is the user's (it names the experiment)
        return os.path.abspath(candidate) if candidate.exists() else value

    return {name: resolved(name, value) for name, value in values.items()}


def route(values: dict, accepts: set[str], where: str, into: dict, config_layer: dict,
          notebook: str) -> None:
    """Sort ``values`` into notebook parameters (``into``) and config changes (``config_layer``)."""
    for name, value in values.items():
        if name in CONFIG_FIELDS:
            config_layer[name] = value
        elif name in accepts:
            into[name] = value
        else:
            raise UsageError(f"{where}: {name!r} is neither a config field nor a parameter of "
                             f"{notebook}; its parameters: {sorted(accepts - set(RUNNER_PARAMETERS))}")


def plan(profile_name: str, stages: list[str] | None = None, profiles_path: Path | None = None,
         extra_parameters: dict | None = None, caller_dir: Path | None = None) -> list[Job]:
    """The jobs of a profile, in stage order, each with its effective config.

    Raises :class:`UsageError` (naming the file and key) for anything that
    would otherwise be dropped or misread.
    """
    caller_dir = caller_dir or Path.cwd()
    profiles_file = Path(profiles_path) if profiles_path else None
    try:
        profiles = load_profiles(profiles_file) if profiles_file else load_profiles()
    except StageError as error:
        raise UsageError(str(error)) from None
    if profile_name not in profiles:
        raise UsageError(f"unknown profile {profile_name!r}; profiles: {sorted(profiles)}")
    profile = profiles[profile_name]
    profile_dir = (profiles_file or PROFILES_FILE).resolve().parent
    user = resolve_paths(extra_parameters or {}, caller_dir)
    # an explicit held-out type or seed replaces that axis of the profile's grid
    held_out = user.pop("held_out_cell_type", profile["held_out"])
    held_out = [held_out] if isinstance(held_out, str) else list(held_out)
    observations: dict[Path, pd.DataFrame] = {}
    seeds = user.pop("seed", profile["seeds"])
    seeds = [seeds] if isinstance(seeds, (int, str)) else list(seeds)
    for axis, values in (("held_out_cell_type", held_out), ("seed", seeds)):
        if not values:
            raise UsageError(f"-p {axis}: an empty list makes no job")
    names = stages or profile["stages"]
    try:
        loaded = [load_stage(name) for name in names]
    except StageError as error:
        raise UsageError(str(error)) from None

    unused = set(user) - {"overrides"}
    unclaimed = set(profile["parameters"]) - CONFIG_FIELDS  # profile-wide keys no notebook takes
    jobs = []
    for stage in loaded:
        name, notebook = stage["name"], NOTEBOOK_DIR / stage["notebook"]
        accepts = set(notebook_parameters(notebook))
        unclaimed -= accepts
        parameters, profile_config, overrides = {}, {}, {}
        where = f"profile {profile_name!r}"
        common = resolve_paths(profile["parameters"], profile_dir)
        # profile-wide parameters go to the notebooks that take them
        route({k: v for k, v in common.items() if k in accepts | CONFIG_FIELDS}, accepts,
              where, parameters, profile_config, notebook.name)
        route(stage["parameters"], accepts, f"stage file {name}.yaml", parameters, profile_config,
              notebook.name)
        own = resolve_paths(profile["stage_parameters"].get(name, {}), profile_dir)
        route(own, accepts,
              f"{where}, stage_parameters.{name}", parameters, profile_config, notebook.name)
        for key, value in user.items():  # -p: a notebook parameter, else a config field
            if key == "overrides":
                continue
            if key in accepts:
                parameters[key] = value
                unused.discard(key)
            elif key in CONFIG_FIELDS and "overrides" in accepts:
                overrides[key] = value
                unused.discard(key)
        takes_config = "overrides" in accepts
        for given in (parameters.get("overrides"), user.get("overrides")):
            if given is not None and not isinstance(given, dict):
                raise UsageError(f"overrides must map config fields to values (e.g. "
                                 f"'{{dropout: 0.5}}'), got {given!r}")
        if takes_config:
            parameters["profile_config"] = profile_config
            parameters["overrides"] = {**(parameters.get("overrides") or {}), **overrides,
                                       **(user.get("overrides") or {})}

        stage_held_out = held_out
        if stage["trains"] and held_out in (["default"], ["all"]):  # words the data resolve
            stage_held_out = dataset_types(name, parameters, held_out[0], observations)
        if parameters.get("held_out_cell_types") == "default":
            parameters["held_out_cell_types"] = dataset_types(name, parameters, "default",
                                                              observations)
        grid = [{}]
        if stage["grid"] == "seed":
            grid = [{"seed": s} for s in seeds]
            if "held_out_cell_type" in (extra_parameters or {}) and "held_out_cell_types" in accepts:
                parameters["held_out_cell_types"] = stage_held_out
        elif stage["grid"] == "held_out x seed":
            if held_out == ["default"]:
                stage_held_out = stage_held_out[:1]
            grid = [{"held_out_cell_type": h, "seed": s} for h in stage_held_out for s in seeds]
        for point in grid:
            values = {**parameters, **point}
            config = None
            if takes_config:
                try:
                    config = stage_config(name, **config_layers(values))
                except (KeyError, ValueError, TypeError) as error:
                    raise UsageError(str(error.args[0] if error.args else error)) from None
            label = "-".join(str(point[k]) for k in ("held_out_cell_type", "seed") if k in point)
            jobs.append(Job(name, notebook, values, f"{name}{'-' + label if label else ''}", config,
                            last=bool(stage["last"]), trains=bool(stage["trains"])))
    if not jobs:
        raise UsageError(f"profile {profile_name!r} makes no job (no stage, held-out type or seed)")
    if unused:
        raise UsageError(f"-p {sorted(unused)}: not a parameter or config field of any notebook "
                         f"in this run ({', '.join(s['name'] for s in loaded)})")
    if unclaimed:
        raise UsageError(f"profile {profile_name!r}, parameters: {sorted(unclaimed)} is neither a "
                         "config field nor a parameter of any notebook of the profile")
    return jobs


def dataset_types(stage: str, parameters: dict, word: str,
                  observations: dict[Path, pd.DataFrame]) -> list[str]:
    """The held-out types ``word`` names in the stage's dataset: ``all`` = every type the
    hold-out rule allows, ``default`` = the dataset's showcase types (data.held_out_types)."""
    try:
        config = stage_config(stage, **config_layers(parameters))
        path = resolve_path(config.dataset)
        if path not in observations:
            observations[path] = obs_of(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return held_out_types(observations[path], config, word)
    except (KeyError, ValueError, TypeError, FileNotFoundError) as error:
        raise UsageError(f"stage {stage}: held-out types {word!r}: "
                         f"{error.args[0] if error.args else error}") from None


def with_checksums(jobs: list[Job]) -> list[Job]:
    """Fill in each job's data checksum (part of its identity) and the cell types it holds
    out, each checked against the data by the hold-out rule (:func:`data.hold_out_problem`):
    missing data or a type that cannot be held out is a UsageError, before any run."""
    observations: dict[Path, pd.DataFrame] = {}
    for job in jobs:
        dataset = job.config.dataset if job.config else job.parameters.get("dataset") or "kang"
        try:
            path = resolve_path(dataset)
        except FileNotFoundError as error:
            raise UsageError(f"stage {job.stage}: {error}") from None
        job.data_sha256 = tracking.data_checksum(path)
        if not (job.config and job.trains):
            continue
        if path not in observations:
            try:
                observations[path] = obs_of(path)
            except ValueError as error:
                raise UsageError(f"stage {job.stage}: {error}") from None
        obs = observations[path]
        for key in (job.config.cell_type_key, job.config.condition_key):
            if key not in obs:
                raise UsageError(f"stage {job.stage}: {path}: obs column {key!r} not found; "
                                 f"available: {list(obs.columns)}")
        chosen = job.parameters.get("held_out_cell_types")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the notebook says which types 'all' leaves out
                if chosen is not None:
                    job.cell_types = held_out_types(obs, job.config, chosen)
                else:
                    problem = hold_out_problem(obs, job.config, job.config.held_out_cell_type)
                    if problem:
                        raise ValueError(problem)
        except ValueError as error:
            raise UsageError(f"stage {job.stage}, {path.name}: {error}") from None
    return jobs


def obs_of(path: Path) -> pd.DataFrame:
    """The cell annotations of a data file, read without loading its matrix."""
    from .data import read_h5ad

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            adata = anndata.read_h5ad(path, backed="r")
        except Exception:
            return read_h5ad(Path(path)).obs  # names the file when it is not an h5ad
    try:
        return adata.obs.copy()
    finally:
        adata.file.close()


def dry_run(jobs: list[Job], stream=sys.stdout, store: TrainingStore | None = None) -> None:
    """One JSON object per job (what would run and with what), then the number of jobs,
    of unique trainings (every variant's) and of those already in the training store;
    nothing is written."""
    for job in jobs:
        print(json.dumps({"stage": job.stage, "run_name": job.run_name, "job_key": job.key,
                          "training_key": job.training_key, "data_sha256": job.data_sha256,
                          "trainings": sorted(job.trainings),
                          "notebook": str(job.notebook.relative_to(NOTEBOOK_DIR.parent)),
                          "parameters": job.parameters,
                          "config": job.config.to_dict() if job.config else None},
                         default=str), file=stream)
    trainings = set().union(*(job.trainings for job in jobs))
    stored = trainings & (store or TrainingStore()).keys()
    print(json.dumps({"jobs": len(jobs), "unique_trainings": len(trainings),
                      "stored": len(stored)}), file=stream)


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


class Stop(BaseException):
    """The runner was asked to stop (SIGTERM or SIGHUP); handled like Ctrl-C."""


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: killed when the runner dies


class Processes:
    """Child processes that never outlive the runner.

    Each runs in its own session (so it can be stopped as a group) and is
    killed by the kernel if the runner dies, even by SIGKILL; a Jupyter kernel
    started by papermill exits when its papermill does.  :meth:`stop` ends
    them all and keeps new ones from starting.
    """

    def __init__(self):
        self.stopping = threading.Event()
        self._live: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def run(self, command: list[str], log: Path, **kwargs) -> int | None:
        """Run ``command`` with output to ``log``; its exit code, or None if stopping."""
        if self.stopping.is_set():
            return None
        with open(log, "w") as log_file:
            process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True,
                                       preexec_fn=_die_with_parent, **kwargs)
            with self._lock:
                self._live.add(process)
            try:
                return process.wait()
            finally:
                with self._lock:
                    self._live.discard(process)

    def stop(self, grace: float = 10.0) -> None:
        """Terminate every live process group (then kill what is left after ``grace`` s)."""
        self.stopping.set()
        with self._lock:
            live = list(self._live)
        for process in live:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.time() + grace
        for process in live:
            try:
                process.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)


def run_pool(items: list, work, parallel: int, processes: Processes) -> list:
    """``work(item)`` for every item, ``parallel`` at a time, in threads; their results.

    The one executor of the project: the runner's notebook jobs and the
    small-data study's trainings both go through it.  On Ctrl-C, SIGTERM or
    SIGHUP no new item starts, the live processes are stopped, every started
    ``work`` is left to close its records, and the interruption is re-raised.
    """
    previous = {}
    if threading.current_thread() is threading.main_thread():
        def stop(signum, frame):
            raise Stop(signal.Signals(signum).name)
        previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    pool, futures = ThreadPoolExecutor(max_workers=max(1, parallel)), []
    try:
        futures = [pool.submit(work, item) for item in items]
        while not all(f.done() for f in futures):
            time.sleep(0.2)
    except BaseException:
        if previous:  # a second signal must not cut the cleanup short
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(s, signal.SIG_IGN)
        processes.stop()  # sets ``stopping`` first: an item that starts now runs nothing
        for future in futures:
            future.cancel()
        pool.shutdown(wait=True)
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    pool.shutdown(wait=True)
    return [future.result() for future in futures]  # a bug in ``work`` does not pass silently


# --- the Ray executor: the same interface as Processes, the jobs run as Ray tasks ---------

EXECUTORS = ("local", "ray")
# what Ray sets on a worker for the devices it gave the task: the job gets the worker's
# values, never the runner's
DEVICE_VARIABLES = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")


def _ray_task():
    """The function a Ray task runs: ``command`` as a child of the worker, output to ``log``.

    Built in here so that Ray ships it by value: a worker runs it with the standard
    library only, without importing this package (and torch) first.  The child runs
    in its own session and is killed by the kernel when the worker dies (killed,
    force-cancelled, its node lost); a plain ``ray.cancel`` arrives as
    KeyboardInterrupt and stops the child's process group (SIGTERM, then SIGKILL).
    """
    def run(command: list[str], log: str, kwargs: dict, threads: int, device_variables,
            grace: float = 10.0) -> int:
        import ctypes
        import os
        import signal
        import subprocess
        import sys
        import time

        def die_with_worker():
            if sys.platform.startswith("linux"):
                ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

        env = dict(kwargs.pop("env", None) or os.environ)
        for name in device_variables:  # the devices Ray gave this task
            env.pop(name, None)
            if name in os.environ:
                env[name] = os.environ[name]
        env.setdefault("OMP_NUM_THREADS", str(threads))  # as many threads as CPUs reserved
        with open(log, "w") as log_file:
            process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True,
                                       preexec_fn=die_with_worker, env=env, **kwargs)
            try:
                while True:  # a timed wait, so that a cancel (KeyboardInterrupt) gets through
                    try:
                        return process.wait(timeout=0.5)
                    except subprocess.TimeoutExpired:
                        pass
            except BaseException:
                for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                    try:
                        os.killpg(process.pid, sig)
                    except ProcessLookupError:
                        break
                    deadline = time.time() + wait
                    while process.poll() is None and time.time() < deadline:
                        time.sleep(0.1)
                    if process.poll() is not None:
                        break
                raise
    return run


def import_ray():
    """Ray, or a UsageError that says how to install it."""
    try:
        import ray
    except ImportError as error:
        raise UsageError(f"--executor ray needs Ray, which is not installed ({error}); install "
                         "it with `make setup-ray` (pip install -e '.[ray]' with the torch "
                         "constraint)") from None
    return ray


def _check_address(address: str) -> None:
    """A HOST:PORT address (bare or ray://) must at least accept a connection: a GCS
    address that does not answer would otherwise keep ``ray.init`` waiting for minutes."""
    import socket

    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address {address!r} is not 'auto', HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as error:
        raise UsageError(f"--address {address!r}: no Ray cluster answers there ({error}); "
                         "start one (ray start --head) or check the address") from None


class RayProcesses:
    """:class:`Processes` on a Ray cluster: each command runs as a Ray task.

    ``run`` submits a task that reserves ``cpus`` CPUs and ``gpus`` GPUs (a
    fraction lets several small trainings share one GPU), runs the command on
    the worker as a child process with output to ``log``, and returns its exit
    code; -1 when the task itself failed (its worker or node died), the reason
    appended to the log; None if stopping.  Tasks are never retried by Ray: a
    job whose worker died is closed FAILED and runs again on the next runner.
    ``stop`` cancels the live tasks (KeyboardInterrupt in the task, which stops
    its command; after ``grace`` s the workers are killed) and starts no new one.

    ``address``: None starts a private local Ray instance (all of this
    machine's CPUs and GPUs) that ends with :meth:`shutdown`; ``'auto'`` joins
    the cluster that ``ray start`` runs on this machine; ``ray://HOST:PORT``
    connects through Ray Client.
    """

    def __init__(self, address: str | None = None, cpus: float = 1, gpus: float = 0):
        import logging

        if not cpus > 0 or not gpus >= 0:
            raise UsageError(f"--cpus-per-job must be > 0 and --gpus-per-job >= 0, got {cpus} "
                             f"and {gpus}")
        ray = self.ray = import_ray()
        self.cpus, self.gpus, self.address = cpus, gpus, address
        self.stopping = threading.Event()
        self._live: set = set()
        self._lock = threading.Lock()
        self.owns_ray = False
        if not ray.is_initialized():
            options = dict(logging_level=logging.WARNING, log_to_driver=False)
            if address is None:  # our own instance, only as big as this machine
                options.update(address="local", include_dashboard=False)
            else:
                _check_address(address)
                options.update(address=address)
            try:
                ray.init(**options)
            except Exception as error:
                where = f"--address {address!r}" if address else "a local Ray instance"
                raise UsageError(f"{where}: could not start or connect to Ray "
                                 f"({type(error).__name__}: {error})") from None
            self.owns_ray = True
        resources = ray.cluster_resources()
        for name, wanted, flag in (("CPU", cpus, "--cpus-per-job"), ("GPU", gpus, "--gpus-per-job")):
            if wanted and resources.get(name, 0) < wanted:
                self.shutdown()
                raise UsageError(f"{flag} {wanted:g}: the Ray cluster has {resources.get(name, 0):g} "
                                 f"{name}(s) in all; no job could ever start")
        self._task = ray.remote(max_retries=0)(_ray_task())

    def capacity(self) -> int:
        """How many jobs the cluster runs at once with these resources per job."""
        resources = self.ray.cluster_resources()
        n = int(resources.get("CPU", 0) // self.cpus)
        if self.gpus:
            n = min(n, int(resources.get("GPU", 0) // self.gpus))
        return max(1, n)

    def on_this_host(self) -> bool:
        """Whether every node of the cluster is this machine (and we are not a Ray Client)."""
        ray = self.ray
        if ray.util.client.ray.is_connected():
            return False
        here = ray.util.get_node_ip_address()
        return all(node["NodeManagerAddress"] == here for node in ray.nodes() if node["Alive"])

    def run(self, command: list[str], log: Path, **kwargs) -> int | None:
        """Run ``command`` as a Ray task with output to ``log``; its exit code, -1 if the task
        failed, None if stopping."""
        ray = self.ray
        if self.stopping.is_set():
            return None
        threads = max(1, int(self.cpus))
        ref = self._task.options(num_cpus=self.cpus, num_gpus=self.gpus).remote(
            [str(part) for part in command], str(log), kwargs, threads, DEVICE_VARIABLES)
        with self._lock:
            self._live.add(ref)
        try:
            while not ray.wait([ref], timeout=1.0)[0]:
                pass
            return ray.get(ref)
        except ray.exceptions.RayError as error:
            if self.stopping.is_set():
                return None
            with contextlib.suppress(OSError), open(log, "a") as log_file:
                reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
                print(f"\n[runner] the Ray task failed: {type(error).__name__}: {reason}",
                      file=log_file)
            return -1
        finally:
            with self._lock:
                self._live.discard(ref)

    def stop(self, grace: float = 10.0) -> None:
        """Cancel every live task (the command is stopped); force after ``grace`` s."""
        self.stopping.set()
        with self._lock:
            live = list(self._live)
        if not live:
            return
        for ref in live:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=False)
        _, left = self.ray.wait(live, num_returns=len(live), timeout=grace + 5)
        for ref in left:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)

    def shutdown(self) -> None:
        """End the Ray instance we started, or leave the cluster we joined (a Ray that was
        already initialised in this process is left alone)."""
        if self.owns_ray and self.ray.is_initialized():
            self.ray.shutdown()


def check_executor(executor: str = "local", address: str | None = None, cpus: float = 1,
                   gpus: float = 0) -> None:
    """Every check of the executor's options that can be made without starting it (the dry
    run makes them too): a UsageError for an unknown executor, options of the other
    executor, Ray missing, resources out of range or an address that does not answer."""
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor {executor!r}; executors: {list(EXECUTORS)}")
    if executor == "local":
        if address is not None or cpus != 1 or gpus != 0:
            raise UsageError("--address, --cpus-per-job and --gpus-per-job are for "
                             "--executor ray")
        return
    if not cpus > 0 or not gpus >= 0:
        raise UsageError(f"--cpus-per-job must be > 0 and --gpus-per-job >= 0, got {cpus:g} "
                         f"and {gpus:g}")
    import_ray()
    if address is not None:
        _check_address(address)


def make_processes(executor: str = "local", address: str | None = None, cpus: float = 1,
                   gpus: float = 0) -> Processes | RayProcesses:
    """The processes of an executor: ``local`` (the default, child processes of this one) or
    ``ray`` (Ray tasks, see :class:`RayProcesses`); both go to :func:`run_pool` alike.
    Raises :class:`UsageError` for an unknown executor, Ray missing or unreachable."""
    check_executor(executor, address, cpus, gpus)
    return Processes() if executor == "local" else RayProcesses(address, cpus, gpus)


# the tracking server's guard: ends the server's whole process group when the runner is
# gone, even killed outright (the server forks workers that PR_SET_PDEATHSIG would miss)
_SERVER_GUARD = """
import os, signal, subprocess, sys, time
runner, server = int(sys.argv[1]), subprocess.Popen(sys.argv[2:])
while server.poll() is None:
    if os.getppid() != runner:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.killpg(0, signal.SIGTERM)
        time.sleep(10)
        os.killpg(0, signal.SIGKILL)
    time.sleep(0.5)
sys.exit(server.returncode)
"""


class TrackingServer:
    """An MLflow server on 127.0.0.1 over a local store, so that jobs on Ray workers log
    through it instead of writing the SQLite file themselves.

    Backend: the store's database; artifacts: the store's ``artifacts/`` folder,
    both as the default root of new experiments and as the destination of
    proxied uploads, so a run's files land where the local executor puts them.
    Its log goes to ``log``.  It ends with :meth:`stop`, and with the runner
    even when the runner is killed (a guard process watches it).
    """

    def __init__(self, store_uri: str, log: Path):
        import socket

        if not store_uri.startswith("sqlite:///"):
            raise UsageError(f"the Ray executor serves a local SQLite store through an MLflow "
                             f"server; {store_uri!r} is not one: pass --tracking-uri http://…")
        database = Path(store_uri[len("sqlite:///"):])
        artifacts = (database.parent / "artifacts").resolve()
        artifacts.mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe:  # a free port (taken again at once by the server)
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.uri, self.log = f"http://127.0.0.1:{port}", Path(log)
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store_uri,
                   "--default-artifact-root", artifacts.as_uri(), "--serve-artifacts",
                   "--artifacts-destination", artifacts.as_uri(), "--host", "127.0.0.1",
                   "--port", str(port), "--workers", "1"]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "w") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _SERVER_GUARD, str(os.getpid()), *command], env=env,
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)

    def wait_until_ready(self, timeout: float = 180.0) -> str:
        """Block until the server answers on /health; its URI."""
        deadline = time.time() + timeout
        while True:
            try:
                tracking.check_reachable(self.uri, timeout=2)
                return self.uri
            except ConnectionError:
                if self.process.poll() is not None or time.time() > deadline:
                    tail = self.log.read_text(errors="replace")[-2000:]
                    self.stop()
                    raise RuntimeError(f"the MLflow server for the Ray jobs did not start "
                                       f"(log {self.log}):\n{tail}") from None
                time.sleep(0.5)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the server's process group, SIGKILL after ``grace`` s."""
        group = self.process.pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break
            deadline = time.time() + grace
            while time.time() < deadline:
                self.process.poll()  # reap the guard
                try:
                    os.killpg(group, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
        self.process.poll()


@contextlib.contextmanager
def open_executor(executor: str = "local", uri: str | None = None, address: str | None = None,
                  cpus: float = 1, gpus: float = 0, server_log: Path | None = None):
    """``(processes, uri for the jobs)``, closed on exit (also on error or signal).

    Local: :class:`Processes`, and the jobs log to ``uri`` itself.  Ray: Ray
    tasks (:class:`RayProcesses`), and over a local SQLite store an MLflow
    server (:class:`TrackingServer`) whose http URI the jobs get; an http
    ``uri`` is passed on as it is.  A cluster beyond this machine cannot reach
    a server on 127.0.0.1: there a SQLite store is refused (pass an http URI).
    """
    uri = tracking.tracking_uri(uri)
    with contextlib.ExitStack() as stack:
        serve = executor == "ray" and not uri.startswith(("http://", "https://"))
        server = None
        if serve:  # started first: it comes up while Ray does
            import_ray()
            server = TrackingServer(uri, server_log or RUN_DIR / "mlflow-server.log")
            stack.callback(server.stop)
        processes = make_processes(executor, address, cpus, gpus)
        if isinstance(processes, RayProcesses):
            stack.callback(processes.shutdown)
            if server is not None and not processes.on_this_host():
                raise UsageError("the Ray cluster reaches beyond this machine, where the MLflow "
                                 "server on 127.0.0.1 cannot be reached: start a tracking server "
                                 "the workers reach and pass --tracking-uri http://HOST:PORT")
        job_uri = server.wait_until_ready() if server is not None else uri
        if server is not None:
            print(f"[runner] Ray jobs log through the MLflow server {job_uri} (store {uri}; "
                  f"its log: {server.log})", flush=True)
        yield processes, job_uri


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


def run_and_close(job: Job, ctx: Context) -> None:
    stage_number = job.stage.split("_")[0]
    started = time.perf_counter()
    try:
        run = tracking.retry(ctx.client.create_run, ctx.experiment_id, run_name=job.run_name, tags={
            "stage": stage_number, "stage_name": job.stage, "profile": ctx.profile,
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
        job.output = ctx.out_dir / job.stage / f"{job.run_name}.ipynb"
        job.output.parent.mkdir(parents=True, exist_ok=True)
        log = job.output.with_suffix(".log")
        parameters = {**job.parameters, "mlflow_tracking_uri": ctx.job_uri,
                      "mlflow_experiment": ctx.experiment, "mlflow_run_id": job.run_id}
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


def parse_parameters(pairs) -> dict:
    """``-p NAME VALUE`` pairs, VALUE read as YAML; a name twice is an error."""
    values = {}
    for name, value in pairs:
        if name in values:
            raise UsageError(f"-p {name} given twice")
        try:
            values[name] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise UsageError(f"-p {name}: {value!r} is not a YAML value: {error}") from None
    return values


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
