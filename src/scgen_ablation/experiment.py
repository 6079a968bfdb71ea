"""One held-out experiment end to end: split -> train -> predict -> score.

This is what every stage notebook calls; the stages differ only in the config.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np

from . import metrics
from .config import ScGenConfig
from .data import Split, dense, split_held_out
from .predict import predict
from .train import EpochCallback, TrainedModel, train


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
        return np.array([self.split.truth.var_names.get_loc(g) for g in self.degs])


def score_all(split: Split, prediction: np.ndarray, config: ScGenConfig,
              degs: list[str]) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Model metrics (+ bootstrap) and every baseline's, under the same DEGs."""
    deg_index = np.array([split.truth.var_names.get_loc(g) for g in degs])
    truth = dense(split.truth.X)
    scores = metrics.score(prediction, truth, deg_index)
    if config.n_bootstrap:
        scores.update(metrics.bootstrap(prediction, truth, deg_index, config.n_bootstrap,
                                        seed=config.seed))
    predictions = metrics.baselines(split, config)
    for name, predicted in predictions.items():
        scores.update({f"{name}_{k}": v for k, v in metrics.score(predicted, truth, deg_index).items()})
    return scores, predictions


def run(adata: ad.AnnData, config: ScGenConfig, *, callback: EpochCallback | None = None,
        checkpoint_path: str | Path | None = None, progress: bool = True) -> Result:
    """Hold out ``config.held_out_cell_type``, train, predict it, and score it."""
    split = split_held_out(adata, config)
    degs = metrics.top_degs(split, config)  # fails early, before training, on too few genes
    model = train(split.train, config, callback=callback, checkpoint_path=checkpoint_path,
                  progress=progress)
    prediction = predict(model, split.train, split.ctrl_target, config)
    scores, baseline_predictions = score_all(split, dense(prediction.X), config, degs)
    scores["epochs_run"] = len(model.history)
    scores["best_epoch"] = model.best_epoch or 0
    return Result(config, split, model, prediction, degs, scores, baseline_predictions)
