"""The converged ablation's tables and figure, drawn from its CSV alone (no training).

    python -m scgen_ablation.ablation_record --report --doc docs/ablation.md README.md

The *ladder* is the path the notebooks climb, one component at a time: the
plain autoencoder (01), the VAE at β = 1 (02), β at scGen's 5e-5 (03), δ from
balanced cell types (04; the full scGen, the same runs as 05).  Every mean is
over the same (held-out type, seed) runs for every row of a table.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .metrics import BASELINES, FIELD_METRICS, LOWER_IS_BETTER, METRIC_LABELS, METRICS
from .study_report import markdown, write_blocks

LADDER = {  # (stage, variant) -> what that step adds
    ("01_autoencoder", "paper"): "01 plain autoencoder",
    ("02_vae", "paper"): "02 + sampling and KL (VAE, β = 1)",
    ("03_kl_weighting", "kl_weight=5e-05"): "03 + KL weight β = 5e-5",
    ("04_balancing", "balanced delta"): "04 + balanced δ (= scGen, 05)",
}
SHOWN = ("r2_mean_all", "r2_mean_top100", "r2_var_all", "pcc_delta_top100",
         "deg_overlap_top100", "edistance")
SHORT = {"r2_mean_all": "R² mean, all", "r2_mean_top100": "R² mean, top-100",
         "r2_var_all": "R² var, all", "r2_var_top100": "R² var, top-100",
         "pcc_delta_all": "r of change, all", "pcc_delta_top100": "r of change, top-100",
         "deg_overlap_top100": "DEGs found", "deg_direction_top100": "DEG direction",
         "edistance": "E-distance ↓"}


def load(csv: Path) -> pd.DataFrame:
    table = pd.read_csv(csv)
    table["run"] = table["held_out_cell_type"] + " · " + table["seed"].astype(str)
    return table


def methods(table: pd.DataFrame) -> pd.DataFrame:
    """Long table: one row per (method, run) for the ladder's steps and the baselines
    (each baseline scored on the ladder's runs), on the runs every step has."""
    rows = []
    for (stage, variant), label in LADDER.items():
        mine = table[(table["stage"] == stage) & (table["variant"] == variant)]
        rows.append(mine.assign(method=label))
    steps = pd.concat(rows, ignore_index=True)
    shared = set.intersection(*(set(g["run"]) for _, g in steps.groupby("method")))
    steps = steps[steps["run"].isin(shared)]
    first = steps[steps["method"] == next(iter(LADDER.values()))]
    for name, label in BASELINES.items():
        columns = {f"{name}_{m}": m for m in (*METRICS, *FIELD_METRICS) if f"{name}_{m}" in first}
        rows.append(first[["run", "held_out_cell_type", "seed", *columns]]
                    .rename(columns=columns).assign(method=label))
    return pd.concat([steps] + rows[len(LADDER):], ignore_index=True)


def mean_sd(long: pd.DataFrame, by: str = "method", metrics=SHOWN) -> pd.DataFrame:
    metrics = [m for m in metrics if m in long]
    grouped = long.groupby(by, sort=False)[metrics]
    mean, sd = grouped.mean(), grouped.std()
    out = mean.round(3).astype(str) + " ± " + sd.round(3).astype(str)
    out["runs"] = grouped.size()
    out.columns = [SHORT.get(c, c) for c in out.columns]
    return out


def ladder_block(table: pd.DataFrame) -> str:
    long = methods(table)
    runs = long[long["method"] == next(iter(LADDER.values()))]
    return (markdown(mean_sd(long)) + f"\n\nMean ± sd over {len(runs)} held-out runs "
            f"({runs['held_out_cell_type'].nunique()} cell types × "
            f"{runs['seed'].nunique()} seeds); ↓: lower is better.")


def variants_block(table: pd.DataFrame) -> str:
    table = table.assign(method=table["stage"] + " · " + table["variant"])
    return markdown(mean_sd(table))


def per_type_block(table: pd.DataFrame, metric: str = "r2_mean_top100") -> str:
    long = methods(table)
    wide = long.groupby(["method", "held_out_cell_type"], sort=False)[metric].mean().unstack()
    wide = wide.loc[list(dict.fromkeys(long["method"]))]
    return markdown(wide.round(3)) + f"\n\n{METRIC_LABELS[metric]}, mean over seeds."


def coverage_block(table: pd.DataFrame) -> str:
    counts = table.groupby(["stage", "variant"], sort=False).agg(
        runs=("run", "nunique"), cell_types=("held_out_cell_type", "nunique"),
        seeds=("seed", "nunique"), devices=("device", lambda d: ", ".join(sorted(set(map(str, d))))),
        train_s=("train_seconds", "median"), epochs=("epochs_run", "median"))
    counts["train_s"] = counts["train_s"].round(0)
    return markdown(counts.reset_index())


def ladder_figure(table: pd.DataFrame, metrics=("r2_mean_all", "r2_mean_top100", "r2_var_all",
                                                 "pcc_delta_top100")) -> plt.Figure:
    """Each method's runs as dots (one colour per held-out type) and their mean as a bar."""
    long = methods(table)
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
        ax.set_title(METRIC_LABELS[metric], fontsize=9)
        low = np.nanmin(long[metric])
        ax.set_xlim(max(0.0, low - 0.05) if metric not in LOWER_IS_BETTER else 0, None)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colours[t], label=t) for t in types]
    fig.legend(handles=handles, loc="lower center", ncol=len(types), fontsize=8, frameon=False)
    fig.suptitle("The ablation ladder at convergence: every held-out type and seed "
                 "(dots), their mean (bars)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    return fig


def write_report(csv: Path, figures: Path, docs=()) -> int:
    if not Path(csv).exists():
        raise SystemExit(f"{csv} does not exist: run python -m scgen_ablation.ablation_record first")
    table = load(csv)
    blocks = {"ablation-ladder": ladder_block(table), "ablation-variants": variants_block(table),
              "ablation-per-type": per_type_block(table), "ablation-coverage": coverage_block(table)}
    for name, block in blocks.items():
        print(f"## {name}\n\n{block}\n")
    figures.mkdir(parents=True, exist_ok=True)
    figure = ladder_figure(table)
    figure.savefig(figures / "ablation_ladder.png", dpi=120)
    plt.close(figure)
    for doc in docs:
        write_blocks(Path(doc), blocks)
    return 0
