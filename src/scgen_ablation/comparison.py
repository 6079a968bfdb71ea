"""The comparison across runs: the ablation table, per-cell-type tables, the reference's figures.

Everything here reads MLflow's run table (``tracking.runs_table``) or CSV
files; nothing trains.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .metrics import BASELINES, FIELD_METRICS, METRICS
from .paths import PROJECT_ROOT, REFERENCE_RESULTS


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
    # the converged record's rows (ablation_record --to-mlflow) are compared in docs/, not here
    from_record = runs.get("tags.source", pd.Series(None, index=runs.index)) == "record"
    keep = (runs["tags.level"] == "result") & counted(runs) & ~from_record
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


def common_runs(table: pd.DataFrame, by: str = "method",
                run: tuple[str, str] = ("cell_type", "params.seed")
                ) -> tuple[pd.DataFrame, list[tuple]]:
    """Only the runs, (held-out type, seed) pairs in the ``run`` columns, that every
    ``by`` group has, so that means compare like with like (the one place this is
    decided: the comparison notebook and the docs' tables); returns the rows kept, in
    their order, and those pairs."""
    pairs = table.groupby(by)[list(run)].apply(lambda runs: set(map(tuple, runs.to_numpy())))
    shared = sorted(set.intersection(*pairs)) if len(pairs) else []
    keep = [pair in set(shared) for pair in map(tuple, table[list(run)].to_numpy())]
    return table[keep], shared


def method_order(method: str) -> tuple:
    """Stage first, then a numeric variant by its number (kl_weight=5e-05 before 0.001)."""
    stage, _, variant = method.partition(" [")
    variant = variant.rstrip("]")
    try:
        number = float(variant.rsplit("=", 1)[-1])
    except ValueError:
        number = None
    return (stage, number is None, number if number is not None else 0.0, variant)


def ablation_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean (and sd, where there is more than one run) of each metric (R², then the
    field's where logged) per stage and variant, over the held-out types and seeds that every stage and variant has (column
    ``held out``), plus the baselines' rows on the same runs."""
    table = result_runs(runs)
    if table.empty:
        return pd.DataFrame(columns=["method", *METRICS, "runs"])
    table, shared = common_runs(table)
    # R² first; the field's metrics too where the runs have them (runs made before
    # they existed do not)
    shown = [m for m in (*METRICS, *FIELD_METRICS) if f"metrics.{m}" in table
             and table[f"metrics.{m}"].notna().any()]
    columns = {f"metrics.{m}": m for m in shown}
    rows = [_mean_sd(table, ["method"], columns)]
    rows[0] = sort_methods(rows[0])
    for name, label in BASELINES.items():
        base_columns = {f"metrics.{name}_{m}": m for m in shown}
        if all(c in table for c in base_columns):
            baseline = table.drop_duplicates(["cell_type", "params.seed"]).assign(method=label)
            rows.append(_mean_sd(baseline, ["method"], base_columns))
    out = pd.concat(rows, ignore_index=True)
    if (out["runs"] <= 1).all():
        out = out.drop(columns=[c for c in out if c.endswith("_sd")])
    out["held out"] = ", ".join(f"{cell_type} (seed {seed})" for cell_type, seed in shared)
    return out


def per_cell_type(runs: pd.DataFrame, method: str | None = None) -> pd.DataFrame:
    """Mean ± sd over seeds of each metric, per held-out cell type (and method)."""
    table = result_runs(runs)
    if method is not None:
        table = table[table["method"] == method]
    columns = {f"metrics.{m}": m for m in (*METRICS, *FIELD_METRICS) if f"metrics.{m}" in table}
    out = _mean_sd(table, ["method", "cell_type"], columns)
    if "params.epochs" in table:  # how long each side trained: the reference's is converged
        epochs = table.groupby(["method", "cell_type"])["params.epochs"].agg(
            lambda e: "/".join(sorted(set(map(str, e.dropna())), key=float)))
        out = out.merge(epochs.rename("epochs").reset_index(), on=["method", "cell_type"])
    return sort_methods(out)


def sort_methods(table: pd.DataFrame) -> pd.DataFrame:
    """Rows in the ablation table's order (stage, then a numeric variant by its number:
    β = 0, 5e-05, 0.001, …), then by cell type."""
    if table.empty:
        return table
    order = sorted(range(len(table)), key=lambda i: (method_order(table["method"].iloc[i]),
                                                     str(table.get("cell_type", pd.Series([""] * len(table))).iloc[i])))
    return table.iloc[order].reset_index(drop=True)


def reference_runs(dataset: str = "kang", path: str | Path | None = None) -> pd.DataFrame | None:
    """The authors' scGen, one row per (cell_type, seed), as measured on ``dataset``'s split,
    or None where it was not: Kang's in ``../shared/reference/results.csv``, another
    dataset's in ``benchmarks/results/reference_<dataset>.csv`` (``benchmarks/reference.py
    --dataset``).  The one place the reference results are read."""
    if path is None:
        path = (REFERENCE_RESULTS if dataset == "kang" else
                PROJECT_ROOT / "benchmarks" / "results" / f"reference_{dataset}.csv")
    if not Path(path).exists():
        return None
    runs = pd.read_csv(path)
    if "implementation" in runs:  # benchmarks/reference.py's own rows: both sides and baselines
        runs = runs[runs["implementation"] == "reference"].drop(columns="implementation")
    return runs.reset_index(drop=True)


def reference_table(path: str | Path = REFERENCE_RESULTS) -> pd.DataFrame:
    """The authors' scGen on the same split (``../shared/reference/results.csv``), per cell type."""
    raw = reference_runs(path=path)
    if raw is None:
        raise FileNotFoundError(f"no reference results at {path}")
    columns = {m: m for m in METRICS}
    out = _mean_sd(raw.assign(method="reference scGen"), ["method", "cell_type"], columns)
    if "epochs" in raw:  # early-stopped: the epochs each seed trained
        epochs = raw.groupby("cell_type")["epochs"].agg(
            lambda e: "/".join(map(str, sorted(set(e)))) + " (early-stopped)")
        out = out.merge(epochs.rename("epochs").reset_index(), on="cell_type")
    return out


def epochs_trained(per_type: pd.DataFrame, methods) -> str:
    """How many epochs each method trained, in a line for a figure: "05_scgen: 8;
    reference scGen: 28–44 (early-stopped)" (the range over types and seeds)."""
    import re

    said = []
    for method in methods:
        text = " ".join(per_type.loc[per_type["method"] == method, "epochs"].astype(str)) \
            if "epochs" in per_type else ""
        numbers = sorted({int(n) for n in re.findall(r"\d+", text)})
        span = ("?" if not numbers else str(numbers[0]) if len(numbers) == 1
                else f"{numbers[0]}–{numbers[-1]}")
        said.append(f"{method}: {span}" + (" (early-stopped)" if "early" in text else ""))
    return "; ".join(said)

