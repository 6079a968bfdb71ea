"""One held-out experiment end to end: split -> train -> predict -> score.

This is what every stage notebook calls; the stages differ only in the config.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from . import metrics
from .config import ScGenConfig
from .data import Split, dense, split_held_out
from .prediction import predict
from .model import TrainedModel
from .store import TrainingStore, train_stored
from .training import EpochCallback, limit_threads


@dataclass
class Result:
    """Everything one held-out run produced.

    ``metrics`` holds the model's ``r2_*`` values, their bootstrap mean/sd, and
    each baseline's as ``<baseline>_r2_*`` (baselines: control, gene_arith,
    pca_arith).
    """

    config: ScGenConfig
    split: Split
    model: TrainedModel
    prediction: ad.AnnData
    degs: list[str]
    metrics: dict[str, float]
    baseline_predictions: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def deg_index(self) -> np.ndarray:
        return metrics.gene_index(self.split.truth.var_names, self.degs)


def score_all(split: Split, prediction: np.ndarray, config: ScGenConfig,
              degs: list[str]) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Model metrics (+ bootstrap) and every baseline's, under the same DEGs."""
    deg_index = metrics.gene_index(split.truth.var_names, degs)
    truth, control = dense(split.truth.X), dense(split.ctrl_target.X)
    field_scores = metrics.field_scorer(control, truth, split.truth.var_names, degs,
                                        seed=config.seed)  # one PCA for every prediction

    def all_scores(predicted):
        return {**metrics.score(predicted, truth, deg_index), **field_scores(predicted)}

    scores = all_scores(prediction)
    if config.n_bootstrap:
        scores.update(metrics.bootstrap(prediction, truth, deg_index, config.n_bootstrap,
                                        seed=config.seed))
    predictions = metrics.baselines(split, config)
    for name, predicted in predictions.items():
        scores.update({f"{name}_{k}": v for k, v in all_scores(predicted).items()})
    return scores, predictions


def assess(model: TrainedModel | None, split: Split, degs: list[str], config: ScGenConfig) -> Result:
    """Predict the held-out type with a trained model and score it (no training).

    Stages that change only the prediction (balancing, delta from samples)
    reuse one trained model through this.  With ``delta_space="pca"`` no model
    is used (None will do).
    """
    model = model.for_prediction(config) if model is not None else None
    prediction = predict(model, split.train, split.ctrl_target, config)
    scores, baseline_predictions = score_all(split, dense(prediction.X), config, degs)
    scores["epochs_run"] = len(model.history) if model else 0
    scores["best_epoch"] = (model.best_epoch or 0) if model else 0
    return Result(config, split, model, prediction, degs, scores, baseline_predictions)


def prepare(adata: ad.AnnData, config: ScGenConfig) -> tuple[Split, list[str]]:
    """The hold-out split and the held-out type's top DEGs (checked before any training)."""
    limit_threads(config.num_threads)
    split = split_held_out(adata, config)
    return split, metrics.top_degs(split, config)


def score_variants(adata: ad.AnnData, training: ScGenConfig, variants: dict[str, ScGenConfig], *,
                   store: TrainingStore | None = None, callback: EpochCallback | None = None,
                   checkpoint_path: str | Path | None = None, progress: bool = False,
                   train_if_unused: bool = True) -> tuple[TrainedModel | None, dict[str, Result]]:
    """Train once, score many: hold out ``training``'s cell type, train ``training`` (or load
    it from ``store``), and score each of ``variants`` (name -> config) on that one model.

    The variants must differ from ``training`` only in how they predict (one training
    key); identical configs are scored once.  With ``train_if_unused=False`` nothing is
    trained when no variant uses a model (all ``delta_space="pca"``).  Every "train once,
    score each variant" of the package (a notebook's run, the small-data study's levers,
    the ablation record's rows) goes through here.
    """
    split, degs = prepare(adata, training)
    unused = all(config.delta_space == "pca" for config in variants.values())
    model = (None if unused and not train_if_unused else
             train_stored(adata, split.train, training, store, callback=callback,
                          checkpoint_path=checkpoint_path, progress=progress))
    scored: dict[str, Result] = {}
    results = {}
    for name, config in variants.items():
        if config.digest() not in scored:
            scored[config.digest()] = assess(model, split, degs, config)
        results[name] = scored[config.digest()]
    return model, results


def run(adata: ad.AnnData, config: ScGenConfig, *, callback: EpochCallback | None = None,
        checkpoint_path: str | Path | None = None, progress: bool = True,
        store: TrainingStore | None = None) -> Result:
    """Hold out ``config.held_out_cell_type``, train, predict it, and score it.

    With a training ``store`` the model is loaded from it when this training
    was made before (by any stage or variant), and saved to it otherwise.
    """
    _, results = score_variants(adata, config, {"": config}, store=store, callback=callback,
                                checkpoint_path=checkpoint_path, progress=progress)
    return results[""]


def metrics_table(result: Result, label: str = "model") -> pd.DataFrame:
    """One row per method (the model and each baseline), one column per R² metric."""
    rows = {label: {m: result.metrics[m] for m in metrics.METRICS}}
    for name in result.baseline_predictions:
        rows[name] = {m: result.metrics[f"{name}_{m}"] for m in metrics.METRICS}
    return pd.DataFrame(rows).T
