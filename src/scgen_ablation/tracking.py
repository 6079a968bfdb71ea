"""MLflow tracking: one store in ``mlruns/`` (SQLite + artifacts beside it).

MLflow 3 refuses a bare ``./mlruns`` file store, so the store is
``sqlite:///mlruns/mlflow.db`` with artifacts in ``mlruns/artifacts``.
``MLFLOW_TRACKING_URI`` overrides it (tests point it at a temporary folder).

SQLite allows one writer at a time; with several processes logging at once a
write can meet "database is locked".  Every write here goes through
:func:`retry`, which waits and tries again.
"""
from __future__ import annotations

import contextlib
import functools
import os
import random
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, TypeVar

import mlflow
from mlflow.tracking import MlflowClient

from .data import PROJECT_ROOT, sha256sum

DEFAULT_STORE = PROJECT_ROOT / "mlruns"
T = TypeVar("T")


def store_uri(store: str | Path) -> str:
    """The SQLite tracking URI for a store folder."""
    store = Path(store).resolve()
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def tracking_uri(uri: str | None = None) -> str:
    """Explicit URI, else ``$MLFLOW_TRACKING_URI``, else the project's ``mlruns/``."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or store_uri(DEFAULT_STORE)


def artifact_root(uri: str) -> str | None:
    """Artifacts live beside a SQLite database, in ``artifacts/``."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "artifacts").as_uri()
    return None


def retry(call: Callable[..., T], *args, attempts: int = 20, **kwargs) -> T:
    """Call ``call``; on a locked SQLite database wait (with jitter) and try again."""
    for attempt in range(attempts):
        try:
            return call(*args, **kwargs)
        except Exception as error:  # MlflowException wraps sqlalchemy's OperationalError
            text = str(error).lower()
            if "locked" not in text and "busy" not in text or attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1) + random.random() * 0.2)
    raise AssertionError("unreachable")


def setup(uri: str | None = None, experiment: str = "kang") -> str:
    """Point MLflow at the store and make sure ``experiment`` exists; return its id."""
    uri = tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    found = retry(client.get_experiment_by_name, experiment)
    if found is not None:
        return found.experiment_id
    location = artifact_root(uri)
    try:
        return retry(client.create_experiment, experiment,
                     artifact_location=f"{location}/{experiment}" if location else None)
    except Exception:  # another process created it first
        found = retry(client.get_experiment_by_name, experiment)
        if found is None:
            raise
        return found.experiment_id


@functools.lru_cache(maxsize=None)
def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@functools.lru_cache(maxsize=None)
def data_checksum(path: str) -> str:
    return sha256sum(path) if path and Path(path).exists() else "unknown"


def start(run_id: str | None = None, *, uri: str | None = None, experiment: str = "kang",
          run_name: str | None = None, tags: dict | None = None, nested: bool = False):
    """Attach to the runner's run (``run_id``) or open a new one; returns the active run.

    Under papermill the runner creates the run and passes its id, so the run's
    final status stays with the runner even if the kernel dies.
    """
    experiment_id = setup(uri, experiment)
    retry(mlflow.set_experiment, experiment_id=experiment_id)
    if run_id:
        run = retry(mlflow.start_run, run_id=run_id)
    else:
        run = retry(mlflow.start_run, experiment_id=experiment_id, run_name=run_name,
                    nested=nested)
    tags = {"git_commit": git_commit(), **(tags or {})}
    retry(mlflow.set_tags, {k: str(v) for k, v in tags.items()})
    return run


@contextlib.contextmanager
def child(run_name: str, tags: dict | None = None):
    """A nested run under the active one, ended (FINISHED or FAILED) when the block exits."""
    parent = mlflow.active_run()
    if parent is None:
        raise RuntimeError("tracking.child needs an active run (call tracking.start first)")
    run = retry(mlflow.start_run, run_name=run_name, nested=True,
                experiment_id=parent.info.experiment_id)
    retry(mlflow.set_tags, {k: str(v) for k, v in (tags or {}).items()})
    try:
        yield run
    except BaseException:
        retry(mlflow.end_run, status="FAILED")
        raise
    retry(mlflow.end_run)


def finish(status: str = "FINISHED") -> None:
    """End the active run (and any nested runs still open)."""
    while mlflow.active_run() is not None:
        retry(mlflow.end_run, status=status)


def log_config(config, data_path: str | None = None) -> None:
    """The full config as params, plus data checksum and config digest as tags."""
    params = {k: str(v) for k, v in config.to_dict().items()}
    retry(mlflow.log_params, params)
    retry(mlflow.set_tags, {"config_digest": config.digest(), "git_commit": git_commit(),
                            "held_out_cell_type": config.held_out_cell_type,
                            "seed": str(config.seed),
                            "data_sha256": data_checksum(data_path or "")})


def epoch_logger() -> Callable[[int, dict], None]:
    """A training callback that logs each epoch's losses as step metrics."""
    def log(epoch: int, record: dict) -> None:
        values = {k: float(v) for k, v in record.items() if k != "epoch"}
        retry(mlflow.log_metrics, values, step=epoch)
    return log


def log_metrics(values: dict[str, float]) -> None:
    retry(mlflow.log_metrics, {k: float(v) for k, v in values.items()})


def set_tags(tags: dict) -> None:
    retry(mlflow.set_tags, {k: str(v) for k, v in tags.items()})


def log_table(table, name: str) -> None:
    """A pandas DataFrame as a CSV artifact (written by MLflow, not into the working folder)."""
    retry(mlflow.log_text, table.to_csv(index=False), name)


def log_figures(figures: dict) -> None:
    import matplotlib.pyplot as plt
    for name, figure in figures.items():
        retry(mlflow.log_figure, figure, f"plots/{name}")
        plt.close(figure)


def log_result(result, figures: dict | None = None, log_model: bool = True) -> None:
    """Metrics, DEGs, figures and (optionally) the trained model of one held-out run.

    The run is tagged ``level=result``: the comparison reads only such runs.
    """
    retry(mlflow.set_tag, "level", "result")
    log_metrics(result.metrics)
    retry(mlflow.log_text, "\n".join(result.degs), "degs_top.txt")
    if figures:
        log_figures(figures)
    if log_model:
        with tempfile.TemporaryDirectory() as folder:
            path = result.model.save(Path(folder) / "model.pt")
            retry(mlflow.log_artifact, str(path), "model")


def runs_table(experiment: str = "kang", uri: str | None = None, filter_string: str = ""):
    """All runs of ``experiment`` as a pandas DataFrame (params, metrics, tags as columns)."""
    experiment_id = setup(uri, experiment)
    return retry(mlflow.search_runs, experiment_ids=[experiment_id], filter_string=filter_string,
                 max_results=50000)
