"""What every doc's report shares: the record read in stage order, the authors' scGen
and the baselines beside a method on the same runs, mean ± sd, and the block writer.

A doc's generated parts sit between ``<!-- report: NAME -->`` and ``<!-- /report -->``;
each module of this package makes the blocks of one doc, and :func:`write_blocks`
puts them in place.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..metrics import BASELINES, FIELD_METRICS, METRICS
from ..record import versioned


REFERENCE = "authors' scGen (reference)"


GENE_ARITHMETIC = "gene-space arithmetic"


SHOWN = ("r2_mean_all", "r2_mean_top100", "r2_var_all", "pcc_delta_top100",
         "deg_overlap_top100", "edistance")


SHORT = {"r2_mean_all": "R² mean, all", "r2_mean_top100": "R² mean, top-100",
         "r2_var_all": "R² var, all", "r2_var_top100": "R² var, top-100",
         "pcc_delta_all": "r of change, all", "pcc_delta_top100": "r of change, top-100",
         "deg_overlap_top100": "DEGs found", "deg_direction_top100": "DEG direction",
         "edistance": "E-distance ↓"}


# The ablation record's report (reports.write_report) writes the blocks named so; the
# study's (reports.small_data.write_report) writes every other.  One file can hold both.
ABLATION_BLOCKS = "ablation-"


def markdown(table: pd.DataFrame, **kwargs) -> str:
    return table.round(3).to_markdown(**kwargs)


def write_blocks(doc: Path, blocks: dict[str, str], mine=lambda name: not name.startswith(ABLATION_BLOCKS)):
    """Replace the text between ``<!-- report: NAME -->`` and ``<!-- /report -->``
    with ``blocks[NAME]`` for each marker this report owns (``mine(NAME)``); an owned
    marker naming no block is an error."""
    pattern = re.compile(r"(<!-- report: (\S+) -->\n).*?(<!-- /report -->)", re.DOTALL)

    def fill(match):
        name = match.group(2)
        if not mine(name):
            return match.group(0)
        if name not in blocks:
            raise KeyError(f"{doc} has a block {name!r} the report does not make; "
                           f"it makes {list(blocks)}")
        return f"{match.group(1)}{blocks[name]}\n{match.group(3)}"

    doc.write_text(pattern.sub(fill, doc.read_text()))


def load(csv: Path) -> pd.DataFrame:
    """The record, in stage order (the stage files' variant order within a stage)."""
    table = versioned(pd.read_csv(csv))
    if "status" not in table:
        table["status"] = "ok"
    if "source" not in table:  # rows this record made itself
        table["source"] = "record"
    table["run"] = table["held_out_cell_type"] + " · " + table["seed"].astype(str)
    return table.sort_values("stage", kind="stable").reset_index(drop=True)


def scored(table: pd.DataFrame) -> pd.DataFrame:
    """The rows with metrics (a diverged training has none)."""
    return table[table["status"] == "ok"]


def latest(table: pd.DataFrame) -> pd.DataFrame:
    """Each dataset's rows of its latest prediction version: rows scored on two versions
    are never compared, and a dataset being rescored shows the runs it has so far."""
    newest = table.groupby("dataset")["prediction_version"].transform("max")
    return table[table["prediction_version"] == newest]


def reference_rows() -> pd.DataFrame | None:
    """The authors' scGen on the same split (../shared/reference; R² only), if present."""
    from ..comparison import reference_runs

    ref = reference_runs()
    if ref is None:
        return None
    ref = ref.rename(columns={"cell_type": "held_out_cell_type"})
    ref["run"] = ref["held_out_cell_type"] + " · " + ref["seed"].astype(str)
    return ref[["run", "held_out_cell_type", "seed", *METRICS]].assign(method=REFERENCE)


def with_baselines(model_rows: pd.DataFrame) -> pd.DataFrame:
    """``model_rows`` (with a ``method`` column), then the authors' scGen and each
    baseline on the same runs (the baselines read from the rows' ``<baseline>_`` columns,
    once per run)."""
    parts = [model_rows]
    reference = reference_rows()
    if reference is not None:
        parts.append(reference[reference["run"].isin(set(model_rows["run"]))])
    runs = model_rows.drop_duplicates("run")
    for name, label in BASELINES.items():
        columns = {f"{name}_{m}": m for m in (*METRICS, *FIELD_METRICS) if f"{name}_{m}" in runs}
        parts.append(runs[["run", "held_out_cell_type", "seed", *columns]]
                     .rename(columns=columns).assign(method=label))
    return pd.concat(parts, ignore_index=True)


def mean_sd(long: pd.DataFrame, by: str = "method", metrics=SHOWN) -> pd.DataFrame:
    metrics = [m for m in metrics if m in long]
    grouped = long.groupby(by, sort=False)[metrics]
    mean, sd = grouped.mean(), grouped.std()
    out = (mean.round(3).astype(str) + " ± " + sd.round(3).astype(str)).where(mean.notna(), "—")
    out["runs"] = grouped.size()
    out.columns = [SHORT.get(c, c) for c in out.columns]
    return out
