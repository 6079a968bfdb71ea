"""The comparison across runs: the ablation table, per-cell-type tables, the reference's figures.

Everything here reads MLflow's run table (``tracking.runs_table``) or CSV
files; nothing trains.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .metrics import BASELINES, METRICS
from .paths import REFERENCE_RESULTS


def on_data(runs: pd.DataFrame, data_sha256: str) -> pd.DataFrame:
    """Only the runs trained and scored on the data file with this checksum."""
    if runs.empty or "tags.data_sha256" not in runs:
        return runs.iloc[0:0]
    return runs[runs["tags.data_sha256"] == data_sha256]


def counted(runs: pd.DataFrame) -> pd.Series:
    """Which runs count: FINISHED, and, under a runner's job, one that its runner closed FINISHED.

    A result run inside a job whose runner was killed, or whose cleanup failed,
    may read FINISHED while its job is not; it does not count.
    """
    if runs.empty:
        return pd.Series(dtype=bool)
    tag = lambda name: runs.get(f"tags.{name}", pd.Series(None, index=runs.index))  # noqa: E731
    top = tag("mlflow.parentRunId").fillna(runs["run_id"])
    by_id = runs.set_index("run_id")
    job_key = top.map(by_id.get("tags.runner_job_key", pd.Series(dtype=object)))
    closed = top.map(by_id.get("tags.runner_status", pd.Series(dtype=object)))
    job_ok = job_key.isna() | (job_key == "") | (closed == "FINISHED")
    return (runs["status"] == "FINISHED") & job_ok


def result_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Counted runs that hold one held-out prediction's metrics (``tags.level == 'result'``)."""
    if runs.empty or "tags.level" not in runs:
        return runs.iloc[0:0]
    keep = (runs["tags.level"] == "result") & counted(runs)
    table = runs[keep].copy()
    variant = table.get("tags.variant", pd.Series("", index=table.index)).fillna("")
    table["method"] = table["tags.stage_name"].fillna("?") + variant.map(lambda v: f" [{v}]" if v else "")
    table["cell_type"] = table["params.held_out_cell_type"]
    return table


def _mean_sd(table: pd.DataFrame, by: list[str], columns: dict[str, str]) -> pd.DataFrame:
    grouped = table.groupby(by)[list(columns)]
    out = grouped.mean().rename(columns=columns)
    sd = grouped.std().rename(columns={k: f"{v}_sd" for k, v in columns.items()})
    out = out.join(sd)
    out["runs"] = grouped.size()
    return out.reset_index()


def ablation_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean (and sd) of each R² metric per stage/variant, plus the baselines' rows.

    Baseline rows come from the same result runs (every run scores the
    baselines on its own split), so they average over the same cell types.
    """
    table = result_runs(runs)
    if table.empty:
        return pd.DataFrame(columns=["method", *METRICS, "runs"])
    columns = {f"metrics.{m}": m for m in METRICS}
    rows = [_mean_sd(table, ["method"], columns)]
    for name, label in BASELINES.items():
        base_columns = {f"metrics.{name}_{m}": m for m in METRICS}
        if all(c in table for c in base_columns):
            baseline = table.drop_duplicates(["cell_type", "params.seed"]).assign(method=label)
            rows.append(_mean_sd(baseline, ["method"], base_columns))
    return pd.concat(rows, ignore_index=True)


def per_cell_type(runs: pd.DataFrame, method: str | None = None) -> pd.DataFrame:
    """Mean ± sd over seeds of each metric, per held-out cell type (and method)."""
    table = result_runs(runs)
    if method is not None:
        table = table[table["method"] == method]
    columns = {f"metrics.{m}": m for m in METRICS}
    return _mean_sd(table, ["method", "cell_type"], columns)


def reference_table(path: str | Path = REFERENCE_RESULTS) -> pd.DataFrame:
    """The authors' scGen on the same split (``../shared/reference/results.csv``), per cell type."""
    raw = pd.read_csv(path)
    columns = {m: m for m in METRICS}
    out = _mean_sd(raw.assign(method="reference scGen"), ["method", "cell_type"], columns)
    return out
