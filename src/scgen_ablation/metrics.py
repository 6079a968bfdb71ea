"""Metrics and baselines, scored the way the paper scores scGen.

R^2 = squared Pearson r of per-gene means (or variances), predicted vs real
stimulated cells of the held-out type, over all genes and over the top DEGs
(Wilcoxon, stimulated vs control *within* the held-out type).
"""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from scipy import stats
from sklearn.decomposition import PCA

from .data import Split, as_log_expression, dense

# The metric names, defined here once.  "top100" is the top ``n_degs`` DEGs
# (100 unless a config says otherwise; the name keeps the paper's default).
METRICS = ("r2_mean_all", "r2_mean_top100", "r2_var_all", "r2_var_top100")
# the three that tables, the runner's summary and the small-data rule show and rank
HEADLINE_METRICS = METRICS[:3]
METRIC_LABELS = {"r2_mean_all": "R² of the mean, all genes",
                 "r2_mean_top100": "R² of the mean, top-100 DEGs",
                 "r2_var_all": "R² of the variance, all genes",
                 "r2_var_top100": "R² of the variance, top-100 DEGs"}
# The field's metrics (scPerturBench; cell-eval; pertpy), beside the paper's R²:
# how well the *change* from control is predicted, whether the right genes move,
# and how far the predicted cells lie from the real ones as a distribution.
# Definitions in docs/metrics.md.
FIELD_METRICS = ("pcc_delta_all", "pcc_delta_top100", "deg_overlap_top100",
                 "deg_direction_top100", "edistance", "deg_overlap_both_top100")
METRIC_LABELS.update({
    "pcc_delta_all": "Pearson r of the change, all genes",
    "pcc_delta_top100": "Pearson r of the change, top-100 DEGs",
    "deg_overlap_top100": "share of the true top-100 DEGs found in the prediction",
    "deg_direction_top100": "share of the true top-100 DEGs moved the right way",
    "edistance": "energy distance to the truth / control's (lower is better)",
    "deg_overlap_both_top100": "share of the true top-100 DEGs, up or down, found in the prediction"})
LOWER_IS_BETTER = {"edistance"}
# the baselines scored beside every model (metric names carry the key as a prefix)
BASELINES = {"control": "control as prediction", "gene_arith": "gene-space arithmetic",
             "pca_arith": "PCA-space arithmetic"}


def r2(predicted: np.ndarray, real: np.ndarray) -> float:
    """Squared Pearson correlation, as ``scipy.stats.linregress(...).rvalue ** 2``."""
    predicted, real = np.asarray(predicted, np.float64), np.asarray(real, np.float64)
    if predicted.std() == 0 or real.std() == 0:
        return 0.0
    return float(stats.linregress(predicted, real).rvalue ** 2)


def top_degs(split: Split, config) -> list[str]:
    """The ``config.n_degs`` top genes (Wilcoxon) of stimulated vs control within the held-out type.

    Exactly ``n_degs`` genes are returned, or an error is raised: the public
    tutorials silently ranked *all* genes when ``n_genes`` was left out.
    """
    n = config.n_degs
    if split.truth.n_vars < n:
        raise ValueError(
            f"cannot take the top {n} DEGs of {split.truth.n_vars} genes; lower n_degs"
        )
    return ranked_genes(dense(split.truth.X), dense(split.ctrl_target.X), split.truth.var_names, n)


def ranked_genes(stimulated: np.ndarray, control: np.ndarray, var_names, n: int,
                 direction: str = "up") -> list[str]:
    """The top ``n`` genes of ``stimulated`` vs ``control`` cells by scanpy's Wilcoxon test.

    ``direction="up"`` is the paper's: the highest scores, so up-regulated genes only.
    ``"both"``: the largest absolute scores, genes that go down counted as those that go up.
    """
    import scanpy as sc  # here, so that the command lines that only name metrics start fast

    if direction not in ("up", "both"):
        raise ValueError(f"direction must be 'up' or 'both', not {direction!r}")
    if len(stimulated) < 2 or len(control) < 2:
        raise ValueError("DEG ranking needs at least 2 control and 2 stimulated held-out cells")
    cells = ad.AnnData(np.concatenate([stimulated, control]).astype(np.float32),
                       var=pd.DataFrame(index=pd.Index(var_names).astype(str)))
    cells.obs_names = [f"c{i}" for i in range(cells.n_obs)]
    cells.obs["_group"] = pd.Categorical(["stim"] * len(stimulated) + ["ctrl"] * len(control))
    # scanpy also takes log2 fold changes, unused here; over every gene some are of means
    # at or below 0 (log-expression shifted down), which warns: the scores are what counts
    with np.errstate(invalid="ignore", divide="ignore"):
        sc.tl.rank_genes_groups(cells, groupby="_group", groups=["stim"], reference="ctrl",
                                method="wilcoxon", n_genes=n if direction == "up" else cells.n_vars)
    ranked = cells.uns["rank_genes_groups"]
    genes = [str(g) for g in ranked["names"]["stim"]]
    if direction == "both":
        scores = np.abs(np.asarray(ranked["scores"]["stim"], np.float64))
        genes = [genes[i] for i in np.argsort(-scores, kind="stable")[:n]]
    if len(genes) != n or len(set(genes)) != n:
        raise AssertionError(f"expected {n} distinct DEGs, got {len(set(genes))}")
    return genes


def gene_index(var_names: pd.Index, genes: list[str]) -> np.ndarray:
    """Positions of ``genes`` in ``var_names``; a gene that is not there is an error."""
    index = pd.Index(var_names).get_indexer(genes)
    if (index < 0).any():
        raise KeyError(f"genes not found: {[g for g, i in zip(genes, index) if i < 0][:5]}")
    return index


def score(predicted: np.ndarray, real: np.ndarray, deg_index: np.ndarray) -> dict[str, float]:
    """The four R^2 values for predicted and real cells, both (n_cells, n_genes)."""
    pm, rm = predicted.mean(0), real.mean(0)
    pv, rv = predicted.var(0), real.var(0)
    return {
        "r2_mean_all": r2(pm, rm),
        "r2_mean_top100": r2(pm[deg_index], rm[deg_index]),
        "r2_var_all": r2(pv, rv),
        "r2_var_top100": r2(pv[deg_index], rv[deg_index]),
    }


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r; 0 when either side does not vary (e.g. a prediction of no change)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


# the energy distance's pairwise distances grow with the square of the cells: beyond this
# many on a side it is estimated on a seeded random subset of them (memory stays ~200 MB)
EDISTANCE_MAX_CELLS = 5000


def energy_distance(a: np.ndarray, b: np.ndarray, max_cells: int = EDISTANCE_MAX_CELLS,
                    seed: int = 0) -> float:
    """Székely's energy distance between two samples (rows), with Euclidean distances:
    2 E|A-B| - E|A-A'| - E|B-B'| (within-sample means over distinct pairs).  Zero only
    when the distributions agree; unlike the squared-distance variant (pertpy's default),
    which reduces to twice the squared distance between the means, it sees spread and shape.
    A side with more than ``max_cells`` cells is subsampled to that many (seeded).
    """
    from scipy.spatial.distance import cdist, pdist

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("the energy distance needs at least 2 cells on each side")
    rng = np.random.default_rng(seed)
    a, b = (x[np.sort(rng.choice(len(x), max_cells, replace=False))] if len(x) > max_cells
            else x for x in (a, b))
    return float(2 * cdist(a, b).mean() - pdist(a).mean() - pdist(b).mean())


def field_scorer(control: np.ndarray, real: np.ndarray, var_names, true_degs: list[str],
                 n_components: int = 50, seed: int = 0):
    """A function scoring one prediction of the held-out type by the field's metrics
    (``FIELD_METRICS``); what depends only on the real cells (the PCA, the control
    cells' distance to the truth) is computed once, here, for every prediction scored.

    ``control`` are the held-out type's control cells (what a prediction starts from),
    ``real`` its stimulated cells, ``true_degs`` the top DEGs of real vs control
    (:func:`top_degs`).  Definitions and sources: docs/metrics.md.
    """
    deg_index = gene_index(pd.Index(var_names), true_degs)
    true_both = set(ranked_genes(real, control, var_names, len(true_degs), direction="both"))
    control_mean = control.mean(0)
    true_change = real.mean(0) - control_mean
    # distances in the principal components of the held-out type's real cells
    real_cells = np.concatenate([control, real])
    pca = PCA(n_components=min(n_components, *real_cells.shape) - 1, random_state=seed)
    pca.fit(real_cells)
    real_codes = pca.transform(real)
    scale = energy_distance(pca.transform(control), real_codes, seed=seed)

    def scores(predicted: np.ndarray) -> dict[str, float]:
        predicted_change = predicted.mean(0) - control_mean
        found = ranked_genes(predicted, control, var_names, len(true_degs))
        return {
            "pcc_delta_all": pearson(predicted_change, true_change),
            "pcc_delta_top100": pearson(predicted_change[deg_index], true_change[deg_index]),
            "deg_overlap_top100": len(set(found) & set(true_degs)) / len(true_degs),
            "deg_direction_top100": float(np.mean(np.sign(predicted_change[deg_index])
                                                  == np.sign(true_change[deg_index]))),
            "edistance": energy_distance(pca.transform(predicted), real_codes, seed=seed) / scale,
            "deg_overlap_both_top100": len(true_both & set(ranked_genes(
                predicted, control, var_names, len(true_degs), direction="both"))) / len(true_both),
        }

    return scores


def field_scores(predicted: np.ndarray, control: np.ndarray, real: np.ndarray, var_names,
                 true_degs: list[str], n_components: int = 50, seed: int = 0) -> dict[str, float]:
    """The field's metrics for one prediction (:func:`field_scorer`, used once)."""
    return field_scorer(control, real, var_names, true_degs, n_components, seed)(predicted)


def bootstrap(predicted: np.ndarray, real: np.ndarray, deg_index: np.ndarray,
              n: int = 100, fraction: float = 0.8, seed: int = 0) -> dict[str, float]:
    """Mean and sd of :func:`score` over ``n`` resamples (``fraction`` of cells, with replacement)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        p = predicted[rng.choice(len(predicted), max(2, int(fraction * len(predicted))))]
        r = real[rng.choice(len(real), max(2, int(fraction * len(real))))]
        rows.append(score(p, r, deg_index))
    table = pd.DataFrame(rows)
    out = {f"{k}_boot_mean": float(v) for k, v in table.mean().items()}
    out.update({f"{k}_boot_sd": float(v) for k, v in table.std().items()})
    return out


# --- baselines ----------------------------------------------------------------------

def _mean_response(X: np.ndarray, split: Split, config) -> np.ndarray:
    """Stimulated minus control mean of each cell type seen in both conditions, averaged
    over those types (one vector of features): the response the baselines add."""
    obs = split.train.obs
    condition = obs[config.condition_key].astype(str).to_numpy()
    cell_type = obs[config.cell_type_key].astype(str).to_numpy()
    ctrl_types = set(cell_type[condition == config.control_label])
    stim_types = set(cell_type[condition == config.stimulated_label])
    paired = sorted(ctrl_types & stim_types)
    stim = np.stack([X[(cell_type == t) & (condition == config.stimulated_label)].mean(0) for t in paired])
    ctrl = np.stack([X[(cell_type == t) & (condition == config.control_label)].mean(0) for t in paired])
    return (stim - ctrl).mean(0)


def response_agreement(split: Split, config, deg_index: np.ndarray) -> dict[str, float]:
    """How the held-out type's true response (stimulated minus control means) compares
    with the mean response of the types seen in both conditions, the response every
    delta is learned from: Pearson r over all genes and over the DEGs, and the size
    ratio (mean absolute change over the DEGs, held-out type / the others).

    It reads the held-out type's stimulated cells: for explaining scores, never for
    choosing settings.
    """
    true = dense(split.truth.X).mean(0) - dense(split.ctrl_target.X).mean(0)
    others = _mean_response(dense(split.train.X), split, config)
    return {
        "response_r_all": float(np.corrcoef(true, others)[0, 1]),
        "response_r_top100": float(np.corrcoef(true[deg_index], others[deg_index])[0, 1]),
        "response_size_top100": float(np.abs(true[deg_index]).mean()
                                      / np.abs(others[deg_index]).mean()),
    }


def gene_space_arithmetic(split: Split, config) -> np.ndarray:
    """Held-out control cells + the mean over other cell types of (stimulated - control) means."""
    return dense(split.ctrl_target.X) + _mean_response(dense(split.train.X), split, config)


def pca_space_arithmetic(split: Split, config, n_components: int = 100) -> np.ndarray:
    """The same arithmetic in the space of the training data's top principal components."""
    X = dense(split.train.X)
    n_components = min(n_components, X.shape[0] - 1, X.shape[1])
    pca = PCA(n_components=n_components, random_state=config.seed).fit(X)
    shift = _mean_response(pca.transform(X), split, config)
    codes = pca.transform(dense(split.ctrl_target.X)) + shift
    return pca.inverse_transform(codes).astype(np.float32)


def baselines(split: Split, config) -> dict[str, np.ndarray]:
    """Predictions (n_cells, n_genes) of the paper's simple baselines, as valid
    log-expression like every prediction (control cells are already)."""
    return {
        "control": dense(split.ctrl_target.X),
        "gene_arith": as_log_expression(gene_space_arithmetic(split, config)),
        "pca_arith": as_log_expression(pca_space_arithmetic(split, config)),
    }
