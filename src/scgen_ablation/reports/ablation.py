"""docs/ablation.md: the ladder at convergence, every variant, per held-out type, the
record's coverage and the GPU-against-CPU check; its two figures.

The *ladder* is the path the notebooks climb, one component at a time: the
plain autoencoder (01), the VAE at β = 1 (02), β at scGen's 5e-5 (03), δ from
balanced cell types (04; the full scGen, the same runs as 05).  Every mean is
over the same (held-out type, seed) runs for every row of a table.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..comparison import common_runs
from ..metrics import LOWER_IS_BETTER, METRIC_LABELS, METRICS
from ..paths import PROJECT_ROOT
from ..record import versioned
from .common import SHORT, load, markdown, mean_sd, scored, with_baselines


LADDER = {  # (stage, variant) -> what that step adds
    ("01_autoencoder", "paper"): "01 plain autoencoder",
    ("02_vae", "paper"): "02 + sampling and KL (VAE, β = 1)",
    ("03_kl_weighting", "kl_weight=5e-05"): "03 + KL weight β = 5e-5",
    ("04_balancing", "balanced delta"): "04 + balanced δ (= scGen, 05)",
}


STUDY_RESULTS = PROJECT_ROOT / "benchmarks" / "results"
# Kang's rows as the lent H100 made them (prediction version 1), kept when the CPU rescoring
# onto version 3 replaced them in the record: the device check's GPU side
GPU_ROWS = STUDY_RESULTS / "kang_h100_v1.csv"


def methods(table: pd.DataFrame) -> pd.DataFrame:
    """Long table: one row per (method, run) for the ladder's steps, the authors' scGen
    and the baselines, on the runs every step has."""
    table = scored(table)
    steps = pd.concat([table[(table["stage"] == stage) & (table["variant"] == variant)]
                       .assign(method=label) for (stage, variant), label in LADDER.items()],
                      ignore_index=True)
    return with_baselines(common_runs(steps, run=("held_out_cell_type", "seed"))[0])


def ladder_block(table: pd.DataFrame) -> str:
    long = methods(table)
    runs = long[long["method"] == next(iter(LADDER.values()))]
    return (markdown(mean_sd(long)) + f"\n\nMean ± sd over {len(runs)} held-out runs "
            f"({runs['held_out_cell_type'].nunique()} cell types × "
            f"{runs['seed'].nunique()} seeds), scored on prediction version "
            f"{table['prediction_version'].max()} (docs/beyond.md); ↓: lower is better.")


def variants_block(table: pd.DataFrame) -> str:
    """Every (stage, variant) on all its scored runs (not only the runs all share)."""
    table = scored(table)
    table = table.assign(method=table["stage"] + " · " + table["variant"])
    return markdown(mean_sd(table)) + (
        "\n\nMean ± sd over each variant's own runs (see the coverage table); ↓: lower is "
        "better; —: not computed (rows the small-data study made, whose weights it did not "
        "keep: the coverage table's `source`).")


def per_type_block(table: pd.DataFrame, metric: str = "r2_mean_top100") -> str:
    long = methods(table)
    wide = long.groupby(["method", "held_out_cell_type"], sort=False)[metric].mean().unstack()
    wide = wide.loc[list(dict.fromkeys(long["method"]))]
    return markdown(wide.round(3)) + f"\n\n{METRIC_LABELS[metric]}, mean over seeds."


def coverage_block(table: pd.DataFrame) -> str:
    counts = table.groupby(["stage", "variant"], sort=False).agg(
        runs=("run", "nunique"), diverged=("status", lambda s: int((s == "diverged").sum())),
        cell_types=("held_out_cell_type", "nunique"),
        seeds=("seed", "nunique"), devices=("device", lambda d: ", ".join(sorted(set(map(str, d))))),
        source=("source", lambda s: ", ".join(sorted(set(s.fillna("record"))))),
        train_s=("train_seconds", "median"), epochs=("epochs_run", "median"))
    counts["train_s"] = counts["train_s"].round(0)
    return markdown(counts.reset_index(), index=False) + (
        "\n\n`runs`: (held-out type, seed) pairs recorded; `diverged`: of those, trainings "
        "whose loss became NaN (no metrics); `train_s`, `epochs`: medians; `source`: "
        "`record` for rows this record trained and scored, a CSV's name for rows it "
        "imported from the small-data study (`ablation_record --from-study`).")


def same_runs_difference(record_rows: pd.DataFrame, study: pd.DataFrame, label: str,
                         study_label: str, digits: int) -> tuple[pd.DataFrame, int]:
    """Record rows against the study's rows of the same (type, seed): the mean and the
    largest absolute difference of the first three R², beside the study's seed sd."""
    metrics = list(METRICS[:3])
    before = study.set_index(["cell_type", "seed"])[metrics]
    after = record_rows.set_index(["held_out_cell_type", "seed"])[metrics]
    after.index.names = before.index.names
    shared = after.index.intersection(before.index)
    difference = (after.loc[shared] - before.loc[shared]).abs()
    out = pd.DataFrame({f"{label}, mean abs. difference": difference.mean(),
                        f"{label}, largest difference": difference.max(),
                        f"sd over seeds ({study_label}), mean over types":
                            study.groupby("cell_type")[metrics].std().mean()}).T
    out.columns = [SHORT[c] for c in out.columns]
    return out.round(digits), len(shared)


def device_block(gpu_csv: Path | None = None, study_csv: Path | None = None) -> str:
    """The paper preset trained on the GPU against the same training made on the CPU (the
    study's `paper` rows): same configuration and seed. The GPU rows are Kang's record as
    the lent H100 made it (:data:`GPU_ROWS`, prediction version 1, the study's too); the
    CPU rescoring replaced them in the record."""
    gpu_csv, study_csv = gpu_csv or GPU_ROWS, study_csv or STUDY_RESULTS / "small_data_prediction.csv"
    if not gpu_csv.exists() or not study_csv.exists():
        return f"(no {gpu_csv.name} or {study_csv.name})"
    rows = scored(load(gpu_csv))
    gpu = rows[(rows["stage"] == "05_scgen") & (rows["variant"] == "paper")
               & (rows["device"] == "cuda")]
    study = versioned(pd.read_csv(study_csv))
    study = study[(study["lever"] == "paper") & (study["device"] == "cpu")]
    versions = set(gpu["prediction_version"]) | set(study["prediction_version"])
    if gpu.empty or len(versions) != 1:  # rows of two versions are never compared
        return f"(no GPU `paper` rows on the study's prediction version in {gpu_csv.name})"
    out, runs = same_runs_difference(gpu, study, "GPU vs CPU", "CPU", 3)
    return markdown(out) + (f"\n\nThe paper preset, same configuration and seed, {runs} "
                            "held-out runs; only the device (and the thread count) differ. "
                            f"Both on prediction version {versions.pop()}: the GPU rows from "
                            f"`benchmarks/results/{gpu_csv.name}`, the CPU rows from the "
                            f"small-data study's `{study_csv.name}`.")


def ladder_figure(table: pd.DataFrame, metrics=("r2_mean_all", "r2_mean_top100", "r2_var_all",
                                                 "pcc_delta_top100"), long=None,
                  title="The ablation ladder at convergence: every held-out type and seed "
                        "(dots), their mean (bars)") -> plt.Figure:
    """Each method's runs as dots (one colour per held-out type) and their mean as a bar."""
    long = methods(table) if long is None else long
    order = list(dict.fromkeys(long["method"]))
    types = sorted(long["held_out_cell_type"].unique())
    colours = dict(zip(types, plt.cm.tab10(np.arange(len(types)))))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 4.6), sharey=False)
    for ax, metric in zip(np.atleast_1d(axes), metrics):
        for i, method in enumerate(order):
            mine = long[long["method"] == method]
            ax.barh(i, mine[metric].mean(), color="0.85", height=0.7)
            jitter = np.linspace(-0.25, 0.25, len(mine)) if len(mine) > 1 else [0]
            ax.scatter(mine[metric], i + np.asarray(jitter), s=9,
                       c=[colours[t] for t in mine["held_out_cell_type"]], zorder=3)
        ax.set_yticks(range(len(order)))
        ax.set_yticklabels(order if ax is np.atleast_1d(axes)[0] else [], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(textwrap.fill(METRIC_LABELS[metric], 40), fontsize=9)
        low = np.nanmin(long[metric])
        ax.set_xlim(max(0.0, low - 0.05) if metric not in LOWER_IS_BETTER else 0, None)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colours[t], label=t) for t in types]
    fig.legend(handles=handles, loc="lower center", ncol=len(types), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    return fig


def blocks(table: pd.DataFrame, everything: pd.DataFrame) -> dict[str, str]:
    return {"ablation-ladder": ladder_block(table), "ablation-variants": variants_block(table),
            "ablation-per-type": per_type_block(table), "ablation-coverage": coverage_block(table),
            "ablation-device": device_block()}


def figures(table: pd.DataFrame) -> dict[str, plt.Figure]:
    return {"ablation_ladder.png": ladder_figure(table)}
