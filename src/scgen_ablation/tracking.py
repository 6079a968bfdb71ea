"""MLflow tracking: one store in ``mlruns/`` (SQLite + artifacts beside it).

MLflow 3 refuses a bare ``./mlruns`` file store, so the store is
``sqlite:///mlruns/mlflow.db`` with artifacts in ``mlruns/artifacts``.
``MLFLOW_TRACKING_URI`` overrides it (tests point it at a temporary folder).

SQLite allows one writer at a time; with several processes logging at once a
write can meet "database is locked".  Every write here goes through
:func:`retry`, which waits and tries again.

A run's status must be the truth.  Every run is tagged with its ``owner``
(host, process id and start time of the process that opened it), so a run
left RUNNING by a process that no longer exists can be found and closed
(:func:`close_orphans`, called by the runner on start).  A notebook that
raises ends its run FAILED at once (:func:`start` installs the hook), instead
of MLflow's exit handler ending it FINISHED when the kernel shuts down.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable, TypeVar

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from .data import DATASETS, data_checksum, resolve_path
from .metrics import METRICS
from .paths import MLRUNS_DIR, PROJECT_ROOT

DEFAULT_STORE = MLRUNS_DIR
T = TypeVar("T")
# How the MLflow UI shows an experiment: MLflow 3 opens one of unknown kind in its
# GenAI view; and a shared view (a JSON experiment tag the UI reads) puts the R²
# metrics, the field's metrics, the variant and the held-out type in the runs table's columns.
VIEW_KEY = "r2"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
EXPERIMENT_TAGS = {
    "mlflow.experimentKind": "custom_model_development",
    VIEW_TAG: json.dumps({
        # the R² only: the UI orders metric columns by name, so the field's (deg_*, edistance,
        # pcc_*) would come first and push R² off a laptop screen; they are a click away
        "selectedColumns": [f"metrics.`{m}`" for m in METRICS]
        + [f"tags.`{t}`" for t in ("covers", "source", "variant", "held_out_cell_type", "seed")],
        "orderByKey": "attributes.start_time", "orderByAsc": False,
        # run names ("07 PCA transport (kang_picks) · CD4T · 0") readable, not cut at 20 characters
        # (the UI applies a width only to a column listed in columnOrder)
        "columnOrder": ["attributes.`Run Name`"], "columnWidths": {"attributes.`Run Name`": 330},
        # the charts view opens on the four R² (a regex over metric names, shown in its search
        # box): the baselines' 40 other charts, some all 0.00, are one clear-click away
        "chartsSearchFilter": "^r2_(mean|var)_(all|top100)$"}),
}
# One colour per stage in the UI's charts and runs table (the UI reads the tag
# ``mlflow.runColor`` of each run it loads; without it, colours cycle per run and
# unlike stages can share one).
STAGE_COLOURS = {"00": "#7f7f7f", "01": "#1f77b4", "02": "#ff7f0e", "03": "#2ca02c",
                 "04": "#d62728", "05": "#9467bd", "06": "#8c564b", "07": "#e377c2",
                 "08": "#17becf"}


def stage_tags(stage: str) -> dict[str, str]:
    """The tags that place a run in its stage: number, name and the stage's colour."""
    number = str(stage)[:2]
    return {"stage": number, "stage_name": str(stage),
            **({"mlflow.runColor": STAGE_COLOURS[number]} if number in STAGE_COLOURS else {})}


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
            if "locked" not in text and "busy" not in text:
                raise
            if attempt == attempts - 1:
                raise StoreLocked(
                    f"the MLflow store {mlflow.get_tracking_uri()} stayed locked through "
                    f"{attempts} tries: another process holds a write lock on its SQLite "
                    "database (a sqlite3 shell, a stuck process); close it, then run again"
                ) from error
            time.sleep(0.1 * (attempt + 1) + random.random() * 0.2)
    raise AssertionError("unreachable")


class StoreLocked(RuntimeError):
    """The SQLite store stayed locked by another process through every retry."""


# where a location in a SQLite store's tables points into its own artifacts/ folder
_ARTIFACT_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                     ("logged_models", "artifact_location"))


def rebase_store(uri: str) -> list[str]:
    """Point a copied or moved SQLite store's artifact locations at its own ``artifacts/``.

    MLflow writes absolute locations into the database, so a copy of a store
    would keep writing into the original's folder (and a moved one recreate
    it).  Every location under another ``.../artifacts`` root is rewritten to
    this store's root, runs and models included; returns the old roots.
    """
    import re
    import sqlite3

    database = Path(uri[len("sqlite:///"):])
    here = artifact_root(uri)
    if not database.is_file() or here is None:
        return []
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection, connection:
        tables = {row[0] for row in connection.execute(
            "select name from sqlite_master where type = 'table'")}
        if "experiments" not in tables:
            return []
        roots = set()
        for (location,) in connection.execute("select artifact_location from experiments"):
            found = re.fullmatch(r"(file://.*/artifacts)/[^/]+", location or "")
            if found and found.group(1) != here:
                roots.add(found.group(1))
        for root in roots:
            for table, column in _ARTIFACT_COLUMNS:
                if table in tables:
                    connection.execute(
                        f"update {table} set {column} = ? || substr({column}, ?) "
                        f"where substr({column}, 1, ?) = ?",
                        (here, len(root) + 1, len(root) + 1, root + "/"))
    return sorted(roots)


def experiment_for(dataset: str | Path) -> str:
    """The experiment a dataset's runs go to: its name, or its file's stem."""
    return str(dataset) if str(dataset) in DATASETS else Path(str(dataset)).stem


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """An HTTP tracking server must answer within seconds; MLflow itself retries for minutes."""
    if not uri.startswith(("http://", "https://")):
        return
    # and when it goes away mid-run, give up after a few tries instead of minutes of them
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as reply:
            if reply.status == 200:
                return
            problem = f"HTTP {reply.status}"
    except Exception as error:  # refused, timed out, DNS, TLS: all the same to the user
        problem = f"{type(error).__name__}: {error}"
    raise ConnectionError(f"MLflow tracking server {uri} is not reachable ({problem}); "
                          "start it, or leave the tracking URI unset for the local mlruns/ store")


def setup(uri: str | None = None, experiment: str = "kang") -> str:
    """Point MLflow at the store and make sure ``experiment`` exists; return its id."""
    uri = tracking_uri(uri)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    with store_lock(uri):  # a new SQLite store's tables are created by one process at a time
        if uri.startswith("sqlite:///"):
            for old in rebase_store(uri):
                print(f"[tracking] this store was copied or moved from {old}: its artifact "
                      f"locations now point at {artifact_root(uri)}", file=sys.stderr)
        client = MlflowClient(uri)
        found = retry(client.get_experiment_by_name, experiment)
        if found is not None:
            if any(found.tags.get(k) != v for k, v in EXPERIMENT_TAGS.items()):  # an older view
                for key, value in EXPERIMENT_TAGS.items():
                    retry(client.set_experiment_tag, found.experiment_id, key, value)
            return found.experiment_id
        location = artifact_root(uri)
        return retry(client.create_experiment, experiment,
                     artifact_location=f"{location}/{experiment}" if location else None,
                     tags=EXPERIMENT_TAGS)


@contextlib.contextmanager
def store_lock(uri: str):
    """An exclusive lock beside a SQLite store (nothing for a server, which serialises itself)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    folder = Path(uri[len("sqlite:///"):]).parent
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".setup.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@functools.lru_cache(maxsize=None)
def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# --- owners: which process a run belongs to, and whether it is still alive -----------

def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner_tag(pid: int | None = None) -> str:
    """``host:pid:start`` of a process (this one by default)."""
    pid = pid or os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or '?'}"


def owner_alive(owner: str) -> bool | None:
    """Whether the owning process still runs; None when that cannot be told from here."""
    try:
        host, pid, started = owner.rsplit(":", 2)
        pid = int(pid)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return started == "?" or _start_time(pid) == started


def close_orphans(uri: str | None = None) -> list[str]:
    """Close the runs whose owning process is gone: RUNNING ones, and runner jobs it never closed.

    A run left RUNNING by a killed process is marked KILLED; so is a runner's
    job run that reads FINISHED (the notebook ended it) but was never closed by
    its runner (tag ``runner_status``): its notebook or results may be missing.
    Returns the ids of the runs closed.
    """
    client = MlflowClient(tracking_uri(uri))
    experiments = [e.experiment_id for e in retry(client.search_experiments)]
    if not experiments:
        return []
    candidates = retry(client.search_runs, experiments, "attributes.status = 'RUNNING'",
                       max_results=50000)
    candidates += retry(client.search_runs, experiments,
                        "attributes.status != 'RUNNING' and tags.runner_job_key != ''",
                        max_results=50000)
    closed = []
    for run in candidates:
        tags = run.data.tags
        if run.info.status != "RUNNING" and tags.get("runner_status"):
            continue  # closed by its runner
        if owner_alive(tags.get("owner", "")) is not False:
            continue  # alive, or on another host, or no owner recorded
        retry(client.set_tag, run.info.run_id, "closed_by", f"orphan check ({owner_tag()})")
        if tags.get("runner_job_key"):
            retry(client.set_tag, run.info.run_id, "runner_status", "KILLED")
        retry(client.set_terminated, run.info.run_id, "KILLED")
        closed.append(run.info.run_id)
    return closed


# --- a failing notebook ends its run FAILED ---------------------------------------

def _end_after_error(error: BaseException) -> None:
    run = mlflow.active_run()
    if run is None:
        return
    status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
    try:
        retry(mlflow.set_tag, "error", f"{type(error).__name__}: {error}"[:500])
    finally:
        finish(status)
    print(f"[tracking] MLflow run {run.info.run_id} ended {status}; run the notebook again "
          "from the top to log a new run", file=sys.stderr)


def _after_cell(result) -> None:
    if result.error_in_exec is not None:
        _end_after_error(result.error_in_exec)


def _fail_runs_on_error() -> None:
    """In IPython: after a cell that raises. Elsewhere: on an uncaught exception."""
    try:
        from IPython import get_ipython
        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None:
        if _after_cell not in shell.events.callbacks["post_run_cell"]:
            shell.events.register("post_run_cell", _after_cell)
        return
    if getattr(sys.excepthook, "__name__", "") != "_excepthook":
        previous = sys.excepthook

        def _excepthook(kind, error, trace):
            _end_after_error(error)
            previous(kind, error, trace)
        sys.excepthook = _excepthook


def start(run_id: str | None = None, *, uri: str | None = None, experiment: str = "kang",
          run_name: str | None = None, tags: dict | None = None, nested: bool = False):
    """Attach to the runner's run (``run_id``) or open a new one; returns the active run.

    Under papermill the runner creates the run and passes its id, so the run's
    final status stays with the runner even if the kernel dies.
    """
    experiment_id = setup(uri, experiment)
    retry(mlflow.set_experiment, experiment_id=experiment_id)
    if mlflow.active_run() is not None and not nested:  # e.g. a notebook run again, half-way
        print(f"[tracking] ending the run left open before, {mlflow.active_run().info.run_id}, "
              "as KILLED", file=sys.stderr)
        finish("KILLED")
    if run_id:
        given = retry(MlflowClient(tracking_uri(uri)).get_run, run_id)
        closed = given.data.tags.get("runner_status")
        if given.info.status != "RUNNING" or closed:
            raise ValueError(
                f"mlflow_run_id {run_id} is a closed run (status {given.info.status}"
                + (f", closed by the runner as {closed}" if closed else "") + "): a notebook "
                "only attaches to the run its runner has just opened; leave mlflow_run_id "
                "unset to log a new run")
        run = retry(mlflow.start_run, run_id=run_id)
        tags = {"git_commit": git_commit(), **(tags or {})}  # the runner's run keeps its owner
    else:
        run = retry(mlflow.start_run, experiment_id=experiment_id, run_name=run_name,
                    nested=nested)
        tags = {"git_commit": git_commit(), "owner": owner_tag(), **(tags or {})}
    retry(mlflow.set_tags, {k: str(v) for k, v in tags.items()})
    _fail_runs_on_error()
    return run


@contextlib.contextmanager
def child(run_name: str, tags: dict | None = None):
    """A nested run under the active one, ended (FINISHED or FAILED) when the block exits."""
    parent = mlflow.active_run()
    if parent is None:
        raise RuntimeError("tracking.child needs an active run (call tracking.start first)")
    run = retry(mlflow.start_run, run_name=run_name, nested=True,
                experiment_id=parent.info.experiment_id)
    retry(mlflow.set_tags, {"owner": owner_tag(), **{k: str(v) for k, v in (tags or {}).items()}})
    try:
        yield run
    except BaseException:
        retry(mlflow.end_run, status="FAILED")
        raise
    retry(mlflow.end_run)


def finish(status: str = "FINISHED") -> None:
    """End the active run (and any nested runs still open).

    A run ended FINISHED here is tagged ``completed``: its notebook reached
    its last line (the runner checks this before it calls a job done).
    """
    while mlflow.active_run() is not None:
        if status == "FINISHED":
            retry(mlflow.set_tag, "completed", "true")
        retry(mlflow.end_run, status=status)


def log_config(config, data_path: str | None = None, varies: tuple[str, ...] = (),
               unused: tuple[str, ...] = ()) -> None:
    """The config as params, plus data checksum and config digest as tags.

    ``varies`` names the fields a stage's parent run sweeps over in its
    children (``kl_weight``, ``held_out_cell_type``, …): they are left out of
    the parent's params and tags, so that nothing there misstates what ran,
    and listed in the tag ``varies``.  ``unused`` fields (the held-out type of a
    stage that holds nothing out) are left out without a word.
    """
    params = {k: str(v) for k, v in config.to_dict().items() if k not in (*varies, *unused)}
    retry(mlflow.log_params, params)
    tags = {"config_digest": config.digest(), "git_commit": git_commit(),
            "data_sha256": data_checksum(data_path or ""),
            "held_out_cell_type": config.held_out_cell_type, "seed": str(config.seed)}
    tags = {k: v for k, v in tags.items() if k not in (*varies, *unused)}
    if varies:
        tags["varies"] = ", ".join(varies)
    retry(mlflow.set_tags, tags)


def log_summary(metric_rows: list[dict], covers: str) -> dict[str, float]:
    """A stage's parent run: the mean of its results' metrics, under the same names.

    ``metric_rows`` are the results' metric dicts; ``covers`` says what the
    mean is over (tag ``covers``), e.g. "5 variants (kl_weight=0 … 1), CD4T, seed 0".
    """
    # the numeric metrics every result has (a seed is not a metric)
    table = pd.DataFrame(metric_rows).select_dtypes("number").dropna(axis=1)
    means = table.drop(columns="seed", errors="ignore").mean().to_dict()
    log_metrics(means, digits=4)
    set_tags({"covers": covers, "level": "summary"})
    return means


def epoch_logger() -> Callable[[int, dict], None]:
    """A training callback that logs each epoch's losses as step metrics."""
    def log(epoch: int, record: dict) -> None:
        values = {k: float(v) for k, v in record.items() if k != "epoch"}
        retry(mlflow.log_metrics, values, step=epoch)
    return log


def log_metrics(values: dict[str, float], digits: int | None = None) -> None:
    """Final metrics; ``digits`` rounds them (four are plenty for R², and the UI cuts long ones)."""
    retry(mlflow.log_metrics, {k: float(v) if digits is None else round(float(v), digits)
                               for k, v in values.items()})


def view_links(base: str = "http://127.0.0.1:5000", uri: str | None = None) -> list[str]:
    """Links that open each experiment's runs table with the R² columns shown."""
    client = MlflowClient(tracking_uri(uri))
    return [f"{experiment.name}: {base}/#/experiments/{experiment.experiment_id}/runs"
            f"?viewStateShareKey={VIEW_KEY}"
            for experiment in retry(client.search_experiments) if VIEW_TAG in experiment.tags]


def set_tags(tags: dict) -> None:
    retry(mlflow.set_tags, {k: str(v) for k, v in tags.items()})


def log_json(values: dict, name: str) -> None:
    """A dict as a JSON artifact (numpy numbers as plain ones)."""
    def plain(value):
        return value.item() if hasattr(value, "item") else str(value)

    retry(mlflow.log_text, json.dumps(values, indent=1, default=plain), name)


def log_table(table, name: str) -> None:
    """A pandas DataFrame as a CSV artifact (written by MLflow, not into the working folder)."""
    retry(mlflow.log_text, table.to_csv(index=False), name)


def log_figures(figures: dict, show: bool = True) -> None:
    """Each figure as ``plots/<name>``; with ``show``, a notebook shows it too.

    Under the inline backend a figure left open is drawn below the cell (and
    closed) when the cell ends; every other figure is closed here.
    """
    import matplotlib
    import matplotlib.pyplot as plt

    inline = "inline" in matplotlib.get_backend().lower()
    for name, figure in figures.items():
        retry(mlflow.log_figure, figure, f"plots/{name}")
        if not (show and inline):
            plt.close(figure)


def log_result(result, figures: dict | None = None, log_model: bool = True) -> None:
    """Metrics, DEGs, figures and (optionally) the trained model of one held-out run.

    The run is tagged ``level=result``: the comparison reads only such runs.
    """
    retry(mlflow.set_tag, "level", "result")
    log_metrics(result.metrics, digits=4)
    retry(mlflow.log_text, "\n".join(result.degs), "degs_top.txt")
    if figures:
        log_figures(figures, show=False)
    if log_model:
        with tempfile.TemporaryDirectory() as folder:
            path = result.model.save(Path(folder) / "model.pt")
            retry(mlflow.log_artifact, str(path), "model")


# Words a result run's name shortens, longest first, so that a name fits the MLflow UI's
# Run Name column (about 30 characters at a 1,600-pixel width): the full variant stays
# in the run's ``variant`` tag.  tests/test_record.py checks that the record's names stay
# unique.
SHORTER = (("paired delta + residual decoding", "paired δ+residual"),
           ("balanced delta + balanced training", "balanced δ+training"),
           ("similarity-weighted delta", "weighted δ"), ("fitted response model", "fitted"),
           ("per-cell transport", "transport"), ("delta from paired cell types", "paired δ"),
           ("delta from posterior samples", "sampled δ"), ("no balancing for delta", "no balancing δ"),
           ("best-by-validation weights", "best-val weights"),
           ("balanced training batches", "balanced batches"), ("residual decoding", "residual"),
           ("PCA · ", "PCA "), ("kl_weight=", "β="), ("delta", "δ"))


def stage_run_name(stage: str, *grid_point) -> str:
    """A stage run's name: the stage and its grid point (held-out type and/or seed, as
    the stage's grid has them), e.g. ``05_scgen-0`` or ``01_autoencoder-CD4T-0``."""
    return "-".join([str(stage), *(str(p) for p in grid_point)])


def result_name(stage: str, variant: str, cell_type: str, seed) -> str:
    """A result run's name: stage number, short variant, held-out type and seed,
    e.g. ``07 PCA transport · CD4T · 0`` for 07_beyond's "PCA · per-cell transport"."""
    for long, short in SHORTER:
        variant = variant.replace(long, short)
    return f"{str(stage)[:2]} {variant} · {cell_type} · {seed}"


@contextlib.contextmanager
def result_run(stage: str, variant: str, cell_type: str, seed, *, config=None,
               data_path: str | None = None, tags: dict | None = None,
               experiment: str | None = None):
    """The one way a result run is written: one held-out run of a stage's variant.

    Named by :func:`result_name`, tagged with its stage (and colour), variant and
    ``level=result`` (the comparison reads only such runs), with ``config`` logged
    when given (its data file: ``data_path``, or the config's dataset). Nested under
    the active run if there is one (a notebook's stage run), otherwise a run of its
    own in ``experiment``. It ends FAILED if the block raises.
    """
    name = result_name(stage, variant, cell_type, seed)
    tags = {**stage_tags(stage), "variant": variant, "level": "result", **(tags or {})}

    def describe():
        if config is not None:
            log_config(config, data_path or str(resolve_path(config.dataset)))

    if mlflow.active_run() is not None:
        with child(name, tags=tags) as run:
            describe()
            yield run
        return
    run = start(experiment=experiment or "kang", run_name=name, tags=tags)
    try:
        describe()
        yield run
    except BaseException:
        finish("FAILED")
        raise
    finish()


def variant_run(stage: str, variant: str, config, data_path: str,
                compute: Callable, *, make_plots: bool = True, log_model: bool = True):
    """One logged nested run: a stage's variant, computed and scored.

    Opens a :func:`result_run`, calls ``compute(config)`` (which returns an
    experiment ``Result``), and logs its metrics, figures and (with
    ``log_model``) model. The run ends FAILED if ``compute`` raises.
    """
    from . import plots  # matplotlib and scanpy: not for the runner's command line

    with result_run(stage, variant, config.held_out_cell_type, config.seed, config=config,
                    data_path=data_path):
        result = compute(config)
        log_result(result, plots.standard_figures(result, with_umap=False) if make_plots else None,
                   log_model=log_model)
    return result


def log_row(row: dict, digits: int = 4) -> None:
    """A record row in the active result run: its numbers as metrics, the row as scores.json."""
    log_metrics(digits=digits, values={
        k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        and k != "seed" and pd.notna(v)})
    log_json({k: (None if isinstance(v, float) and pd.isna(v) else v) for k, v in row.items()},
             "scores.json")


def runs_table(experiment: str = "kang", uri: str | None = None, filter_string: str = ""):
    """All runs of ``experiment`` as a pandas DataFrame (params, metrics, tags as columns)."""
    experiment_id = setup(uri, experiment)
    return retry(mlflow.search_runs, experiment_ids=[experiment_id], filter_string=filter_string,
                 max_results=50000)
