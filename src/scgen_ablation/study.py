"""What helps on small data: levers over the paper configuration, and the selection rule.

A *prediction lever* changes only how a trained model is used (which weights,
which cells define delta, how the prediction is decoded), so one training run
per held-out cell type and seed serves all of them.  A *training lever*
changes the model or its training and needs its own run.

The selection rule, stated before any run was made:

    rank every variant on each held-out cell type (mean over seeds) by each of
    r2_mean_all, r2_mean_top100 and r2_var_all; average the ranks over metrics
    and cell types; the lowest average rank wins.

For held-out cell type T the variant is chosen from the *other* cell types'
scores only (leave-one-type-out), so T's own stimulated cells never influence
the settings T is scored with.  The recommended preset is the rule applied to
all cell types.
"""
from __future__ import annotations

import time

import anndata as ad
import pandas as pd

from .config import ScGenConfig
from .experiment import assess, prepare
from .training import train

RANKED_METRICS = ("r2_mean_all", "r2_mean_top100", "r2_var_all")

PREDICTION_LEVERS: dict[str, dict] = {
    "paper": {},
    "best-by-validation weights": {"keep_best": True},
    "delta from posterior samples": {"delta_latent": "sample"},
    "no balancing for delta": {"balance_delta": False},
    "delta from paired cell types": {"delta_cell_types": "paired"},
    "residual decoding": {"prediction_mode": "residual"},
    "paired delta + residual decoding": {"delta_cell_types": "paired",
                                         "prediction_mode": "residual"},
}

TRAINING_LEVERS: dict[str, dict] = {
    "weight decay 1e-4": {"weight_decay": 1e-4},
    "dropout 0.5": {"dropout": 0.5},
    "latent 20, width 256": {"latent_dim": 20, "hidden_sizes": (256, 256)},
    "beta 1e-3": {"kl_weight": 1e-3},
    "learning rate 1e-4": {"learning_rate": 1e-4},
    "L1 reconstruction": {"reconstruction_loss": "l1"},
    "ReLU output": {"output_activation": "relu"},
    "balanced training batches": {"balance_training": True},
}


def evaluate_prediction_levers(adata: ad.AnnData, config: ScGenConfig,
                               levers: dict[str, dict] = PREDICTION_LEVERS,
                               callback=None) -> list[dict]:
    """Train ``config`` once, then score every prediction lever on it.

    Returns one row per lever: cell type, seed, lever, metrics (model and baselines).
    """
    split, degs = prepare(adata, config)
    started = time.perf_counter()
    model = train(split.train, config.replace(keep_best=False), callback=callback,
                  progress=False)
    seconds = time.perf_counter() - started
    best = model.with_weights(model.best_state) if model.best_state is not None else model
    rows = []
    for lever, changes in levers.items():
        variant = config.replace(**changes)
        result = assess(best if variant.keep_best else model, split, degs, variant)
        rows.append({"cell_type": config.held_out_cell_type, "seed": config.seed,
                     "lever": lever, "kind": "prediction", "train_seconds": seconds,
                     **result.metrics})
    return rows


def evaluate_training_lever(adata: ad.AnnData, config: ScGenConfig, lever: str,
                            changes: dict) -> dict:
    """Train and score one training lever (its own model)."""
    split, degs = prepare(adata, config)
    variant = config.replace(**changes)
    started = time.perf_counter()
    model = train(split.train, variant, progress=False)
    seconds = time.perf_counter() - started
    result = assess(model, split, degs, variant)
    return {"cell_type": config.held_out_cell_type, "seed": config.seed, "lever": lever,
            "kind": "training", "train_seconds": seconds, **result.metrics}


def average_ranks(scores: pd.DataFrame) -> pd.Series:
    """Average rank (1 = best) of each lever over cell types and RANKED_METRICS.

    ``scores`` has one row per cell type, seed and lever, with the metric columns.
    """
    per_type = scores.groupby(["cell_type", "lever"])[list(RANKED_METRICS)].mean()
    ranks = per_type.groupby(level="cell_type").rank(ascending=False)
    return ranks.mean(axis=1).groupby(level="lever").mean().sort_values()


def select_lever(scores: pd.DataFrame, held_out_cell_type: str | None = None) -> str:
    """The selection rule; with ``held_out_cell_type`` its rows are dropped first.

    Only a table of scores is read here, never cells.
    """
    if held_out_cell_type is not None:
        scores = scores[scores["cell_type"] != held_out_cell_type]
    if scores.empty:
        raise ValueError("no scores left to select from")
    return str(average_ranks(scores).index[0])


def leave_one_type_out(scores: pd.DataFrame, candidates: list[str] | None = None) -> pd.DataFrame:
    """For each cell type: the lever the rule picks from the other types, and its scores there.

    Needs at least two cell types; with fewer the table is empty.
    """
    if candidates is not None:
        scores = scores[scores["lever"].isin(candidates)]
    rows = []
    if scores["cell_type"].nunique() < 2:
        return pd.DataFrame(columns=["cell_type", "selected", *RANKED_METRICS])
    for cell_type in sorted(scores["cell_type"].unique()):
        lever = select_lever(scores, held_out_cell_type=cell_type)
        own = scores[(scores["cell_type"] == cell_type) & (scores["lever"] == lever)]
        rows.append({"cell_type": cell_type, "selected": lever,
                     **own[list(RANKED_METRICS)].mean().to_dict()})
    return pd.DataFrame(rows)


def log_rows(rows: list[dict], config: ScGenConfig) -> None:
    """Each row as an MLflow result run of stage 06 (nested when a run is active)."""

    from . import tracking

    levers = {**PREDICTION_LEVERS, **TRAINING_LEVERS}
    for row in rows:
        variant = config.replace(held_out_cell_type=row["cell_type"], seed=int(row["seed"]),
                                 **levers.get(row["lever"], {}))
        with tracking.child(f"06-{row['lever']}-{row['cell_type']}-{row['seed']}", tags={
                "stage": "06", "stage_name": "06_small_data", "variant": row["lever"],
                "level": "result"}):
            tracking.log_config(variant)
            tracking.log_metrics({k: v for k, v in row.items()
                                  if isinstance(v, (int, float)) and k != "seed"})


BASELINE_LABELS = {"control": "control as prediction", "gene_arith": "gene-space arithmetic",
                   "pca_arith": "PCA-space arithmetic"}


def comparison_table(scores: pd.DataFrame, recommended: str, reference: pd.DataFrame | None = None,
                     metrics=("r2_mean_all", "r2_mean_top100", "r2_var_all", "r2_var_top100")
                     ) -> pd.DataFrame:
    """Per cell type: reference, gene-space, PCA, paper config, recommended; mean and sd over seeds."""
    parts = []
    paper = scores[scores["lever"] == "paper"]
    for name, label in BASELINE_LABELS.items():
        columns = {f"{name}_{m}": m for m in metrics}
        renamed = paper[["cell_type", *columns]].rename(columns=columns)
        parts.append(renamed.assign(method=label)[["method", "cell_type", *metrics]])
    parts.append(paper.assign(method="paper config")[["method", "cell_type", *metrics]])
    chosen = scores[scores["lever"] == recommended]
    parts.append(chosen.assign(method=f"recommended ({recommended})")[["method", "cell_type", *metrics]])
    if reference is not None:
        parts.append(reference.assign(method="reference scGen")[["method", "cell_type", *metrics]])
    table = pd.concat(parts, ignore_index=True)
    grouped = table.groupby(["cell_type", "method"], sort=False)[list(metrics)]
    out = grouped.mean().join(grouped.std().add_suffix("_sd"))
    out["seeds"] = grouped.size()
    return out.reset_index()
