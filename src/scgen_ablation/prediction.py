"""Prediction by latent delta arithmetic (scGen's algorithm, docs/design.md).

1. control and stimulated cells of the training data;
2. each set balanced over cell types (resampled with replacement, seeded);
3. both subsampled without replacement to the same size;
4. delta = mean latent code of stimulated - of control;
5. prediction = decode(mu(held-out control cells) + delta), negative entries set to 0.
"""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import torch

from .data import as_log_expression, balance, check_expression, check_labels, check_names, dense
from .model import TrainedModel
from .responses import response

PREDICTED_LABEL = "predicted"
# What a record row's numbers were scored on (the record's prediction_version column): each
# version after 1 changed what ``predict`` returns for the configs it names, and no other.
# 1 = the prediction as computed, negative entries included (every row before issue #30).
PREDICTION_CHANGES = {
    2: ("valid log-expression: negative entries set to 0 (data.as_log_expression)",
        lambda config: True),
    3: ("mean_space='pca': the twin's mean set on the returned cells, after that clip "
        "(with_mean), not before it", lambda config: config.mean_space == "pca"),
}
PREDICTION_VERSION = max(PREDICTION_CHANGES)


def current_version(version: int, config) -> int:
    """The version a prediction scored on ``version`` for ``config`` counts as today:
    PREDICTION_VERSION if no later version changed that config's prediction (it is what
    this code returns), else ``version`` (it is not)."""
    later = [changed(config) for v, (_, changed) in PREDICTION_CHANGES.items() if v > version]
    return version if any(later) else PREDICTION_VERSION


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


def pca_space(train: ad.AnnData, config, n_components: int = 50):
    """The gene-space twin of the latent space: the training data's principal components
    (fitted on the training cells only), as (embed, unembed) functions."""
    from sklearn.decomposition import PCA

    X = dense(train.X)
    pca = PCA(n_components=min(n_components, *X.shape) - 1, random_state=config.seed).fit(X)
    return (lambda adata: pca.transform(dense(adata.X)),
            lambda z: pca.inverse_transform(z).astype(np.float32))


def mean_delta(Z: np.ndarray, train: ad.AnnData, config) -> np.ndarray:
    """scGen's delta (steps 1-4) on codes ``Z`` of the training cells (any embedding)."""
    ctrl, stim = delta_sets(train, config, np.random.default_rng(config.seed))
    return Z[stim].mean(0) - Z[ctrl].mean(0)


def with_mean(X: np.ndarray, target: np.ndarray, chunk: int = 512) -> np.ndarray:
    """``X`` moved per gene, then clipped at 0, so that each gene's mean is ``target``.

    The shift is the one exact solution of mean(max(X + shift, 0)) = target for each gene
    (target >= 0; at 0 the gene is 0 in every cell): moving first and clipping after would
    raise the mean of every gene where some cells fall below 0. Each cell keeps its
    difference from the others wherever it stays above 0. ``chunk`` genes at a time.
    """
    X = np.asarray(X)
    target = np.asarray(target, dtype=np.float64)
    if (target < 0).any():
        raise ValueError("a mean of log-expression cannot be negative")
    moved = np.empty(X.shape, dtype=np.float32)
    for start in range(0, X.shape[1], chunk):
        genes = slice(start, start + chunk)
        moved[:, genes] = as_log_expression(X[:, genes] + _clipped_shift(X[:, genes], target[genes]))
    return moved


def _clipped_shift(X: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per gene, the shift s with mean(max(X + s, 0)) = target (-inf where target is 0)."""
    n = X.shape[0]
    top = -np.sort(-np.asarray(X, dtype=np.float64), axis=0)  # each gene's values, largest first
    k = np.arange(1, n + 1)[:, None]
    shift = (n * target - np.cumsum(top, axis=0)) / k  # the shift if exactly the top k stay > 0
    below = np.vstack([top[1:] + shift[:-1] <= 0, np.ones((1, X.shape[1]), dtype=bool)])
    positive = top + shift > 0
    exact = positive & below  # one k per gene with target > 0 (a tie at 0: the first)
    # rounding can leave a gene no exact k: then the largest k whose cells stay above 0
    last = n - 1 - positive[::-1].argmax(0)
    chosen = shift[np.where(exact.any(0), exact.argmax(0), last), np.arange(X.shape[1])]
    return np.where(target > 0, chosen, -np.inf)


def predict(model: TrainedModel | None, train: ad.AnnData, ctrl_target: ad.AnnData,
            config=None) -> ad.AnnData:
    """Predict the stimulated state of ``ctrl_target`` (control cells of the held-out type).

    Returns valid log-expression (negative entries set to 0: data.as_log_expression)
    as AnnData with the same var as the input, one row per input cell,
    ``obs[condition_key] = "predicted"`` and the delta in ``uns["delta"]``.
    ``prediction_mode="residual"`` adds the decoded change to each control
    cell instead of decoding the cell itself.  ``delta_method`` other than
    "mean" makes the response depend on the held-out type (responses.py);
    ``delta_space="pca"`` does all of it in principal components instead of
    the model's latent space (the model is then not used); ``mean_space="pca"``
    keeps the model's cells but moves them so that the returned mean is that model-free
    twin's (``with_mean``).
    """
    config = config or model.config
    if model is None and config.delta_space != "pca":
        raise ValueError("a model is needed unless delta_space='pca'")
    if ctrl_target.n_obs == 0:
        raise ValueError("no control cells to predict from")
    # as strict as training: NaN, raw counts or un-logged values give nonsense, not errors
    check_expression(ctrl_target.X, "control cells to predict from (ctrl_target.X)")
    check_expression(train.X, "training cells that define delta (train.X)")
    for adata in (ctrl_target, train):
        check_names(adata)
        if model is not None:
            model.check_genes(adata)
    if model is None and list(train.var_names) != list(ctrl_target.var_names):
        shared = train.var_names.intersection(ctrl_target.var_names)
        raise ValueError(
            f"the training cells and the control cells to predict from have other genes "
            f"({train.n_vars} and {ctrl_target.n_vars}, {len(shared)} shared; same set in "
            "another order counts as different): subset and order both with adata[:, genes]")
    for key in (config.condition_key, config.cell_type_key):
        check_labels(train, key)
    if config.delta_space == "pca":
        embed, unembed = pca_space(train, config)
    else:
        def embed(adata):
            return encode(model, adata)[0]

        def unembed(z):
            return decode(model, z)
    mu = embed(ctrl_target)
    if config.delta_method == "mean":
        delta = (latent_delta(model, train, config) if config.delta_space == "latent"
                 else mean_delta(embed(train), train, config))
    else:  # a response that depends on the held-out type (responses.py)
        rng = np.random.default_rng(config.seed)
        delta = response(config.delta_method, embed(train),
                         train.obs[config.cell_type_key].astype(str).to_numpy(),
                         train.obs[config.condition_key].astype(str).to_numpy(), mu,
                         config.control_label, config.stimulated_label, rng)
    shifted = unembed(mu + delta)
    if config.prediction_mode == "residual":
        shifted = dense(ctrl_target.X) + shifted - unembed(mu)
    if config.mean_space == "pca" and config.delta_space != "pca":
        # the cells' differences from their mean stay the model's; the mean is the twin's
        twin = predict(None, train, ctrl_target,
                       config.replace(delta_space="pca", mean_space="same"))
        shifted = with_mean(shifted, dense(twin.X).mean(0))
    obs = pd.DataFrame(ctrl_target.obs.copy())
    obs[config.condition_key] = PREDICTED_LABEL
    obs.index = [f"{name}-{PREDICTED_LABEL}" for name in ctrl_target.obs_names]
    prediction = ad.AnnData(X=as_log_expression(shifted), obs=obs, var=ctrl_target.var.copy())
    prediction.uns["delta"] = delta
    return prediction
