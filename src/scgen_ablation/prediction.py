"""Prediction by latent delta arithmetic (scGen's algorithm, docs/design.md).

1. control and stimulated cells of the training data;
2. each set balanced over cell types (resampled with replacement, seeded);
3. both subsampled without replacement to the same size;
4. delta = mean latent code of stimulated - of control;
5. prediction = decode(mu(held-out control cells) + delta).
"""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import torch

from .data import balance, check_expression, check_labels, check_names, dense
from .model import TrainedModel

PREDICTED_LABEL = "predicted"


@torch.no_grad()
def encode(model: TrainedModel, adata: ad.AnnData, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray | None]:
    """Posterior mean and log variance, each (n_cells, latent_dim); log variance is None for an AE."""
    model.check_genes(adata)
    model.module.eval()
    X = dense(adata.X)
    means, log_vars = [], []
    for start in range(0, X.shape[0], chunk):
        mu, log_var = model.module.encode(torch.from_numpy(X[start:start + chunk]).to(model.device))
        means.append(mu.cpu().numpy())
        if log_var is not None:
            log_vars.append(log_var.cpu().numpy())
    return np.concatenate(means), (np.concatenate(log_vars) if log_vars else None)


@torch.no_grad()
def decode(model: TrainedModel, z: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """(n_cells, latent_dim) -> (n_cells, n_genes) expression."""
    model.module.eval()
    out = [model.module.decode(torch.from_numpy(np.ascontiguousarray(z[s:s + chunk], dtype=np.float32))
                               .to(model.device)).cpu().numpy()
           for s in range(0, z.shape[0], chunk)]
    return np.concatenate(out) if out else np.zeros((0, len(model.genes)), np.float32)


def delta_sets(train: ad.AnnData, config, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into ``train``) of the control and stimulated cells that define delta.

    Steps 1-3 of the algorithm.  With ``delta_cell_types="paired"`` only cell
    types seen in both conditions take part.
    """
    condition = train.obs[config.condition_key].astype(str).to_numpy()
    cell_type = train.obs[config.cell_type_key].astype(str).to_numpy()
    ctrl = np.flatnonzero(condition == config.control_label)
    stim = np.flatnonzero(condition == config.stimulated_label)
    if config.delta_cell_types == "paired":
        shared = np.intersect1d(cell_type[ctrl], cell_type[stim])
        ctrl = ctrl[np.isin(cell_type[ctrl], shared)]
        stim = stim[np.isin(cell_type[stim], shared)]
    if ctrl.size == 0 or stim.size == 0:
        raise ValueError(
            "delta needs training cells in both conditions "
            f"(found {ctrl.size} control, {stim.size} stimulated"
            + (" in cell types seen in both" if config.delta_cell_types == "paired" else "") + ")"
        )
    if config.balance_delta:
        ctrl = ctrl[balance(cell_type[ctrl], rng)]
        stim = stim[balance(cell_type[stim], rng)]
    size = min(ctrl.size, stim.size)
    return rng.choice(ctrl, size, replace=False), rng.choice(stim, size, replace=False)


def latent_delta(model: TrainedModel, train: ad.AnnData, config=None) -> np.ndarray:
    """delta (latent_dim,) = mean latent of stimulated - mean latent of control (steps 1-4)."""
    config = config or model.config
    rng = np.random.default_rng(config.seed)
    ctrl, stim = delta_sets(train, config, rng)
    mu, log_var = encode(model, train)
    if config.delta_latent == "sample" and log_var is not None:
        def codes(index):
            noise = rng.standard_normal((index.size, mu.shape[1])).astype(np.float32)
            return mu[index] + np.exp(0.5 * log_var[index]) * noise
    else:
        def codes(index):
            return mu[index]
    return codes(stim).mean(axis=0) - codes(ctrl).mean(axis=0)


def predict(model: TrainedModel, train: ad.AnnData, ctrl_target: ad.AnnData,
            config=None) -> ad.AnnData:
    """Predict the stimulated state of ``ctrl_target`` (control cells of the held-out type).

    Returns AnnData with the same var as the input, one row per input cell,
    ``obs[condition_key] = "predicted"`` and the delta in ``uns["delta"]``.
    ``prediction_mode="residual"`` adds the decoded change to each control
    cell instead of decoding the cell itself.
    """
    config = config or model.config
    if ctrl_target.n_obs == 0:
        raise ValueError("no control cells to predict from")
    # as strict as training: NaN, raw counts or un-logged values give nonsense, not errors
    check_expression(ctrl_target.X, "control cells to predict from (ctrl_target.X)")
    check_expression(train.X, "training cells that define delta (train.X)")
    for adata in (ctrl_target, train):
        check_names(adata)
        model.check_genes(adata)
    for key in (config.condition_key, config.cell_type_key):
        check_labels(train, key)
    delta = latent_delta(model, train, config)
    mu, _ = encode(model, ctrl_target)
    shifted = decode(model, mu + delta)
    if config.prediction_mode == "residual":
        shifted = dense(ctrl_target.X) + shifted - decode(model, mu)
    obs = pd.DataFrame(ctrl_target.obs.copy())
    obs[config.condition_key] = PREDICTED_LABEL
    obs.index = [f"{name}-{PREDICTED_LABEL}" for name in ctrl_target.obs_names]
    prediction = ad.AnnData(X=shifted.astype(np.float32), obs=obs, var=ctrl_target.var.copy())
    prediction.uns["delta"] = delta
    return prediction
