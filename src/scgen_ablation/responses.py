"""Responses that differ by cell type: beyond scGen's one shared δ.

scGen adds one δ, the mean response of the training cell types, to every
held-out cell.  The small-data study found where that fails: the myeloid
types respond in the same direction as the others but 1.6-2.0x as strongly
(docs/small_data.md).  When one of them is held out, the others are still in
training, with their strong response; these methods let the held-out type's
*control* cells say which training types it resembles.  All of them work in
any embedding of the cells (scGen's latent space, or principal components
for their gene-space twins) and read only:

- the training cells (every cell type's control cells, and the stimulated
  cells of the types other than the held-out one), and
- the held-out type's control cells, as the cells to move.

Every choice of a method's own parameter (a kernel bandwidth, a ridge
penalty) is made by leave-one-type-out *among the training types*: each
training type's response is predicted from the others', and the value with
the smallest error wins.  The largest value in each grid gives back the plain
mean of the per-type responses, so a method reduces to (balanced) scGen when
that is what the training types support.

``similarity``  δ = kernel-weighted mean of the per-type δs; weights from the
                distance between each training type's control mean and the
                held-out type's (Gaussian kernel).
``ridge``       δ as a linear function of a type's control mean, fitted over
                the training types (kernel ridge regression, linear kernel).
``transport``   per cell, in the spirit of scPRAM: each training control cell
                gets its own response by entropic optimal transport to the
                stimulated cells of its type; each held-out control cell takes
                the mean response of the training control cells near it,
                weighted by a softmax over distances (attention).
"""
from __future__ import annotations

import numpy as np

METHODS = ("mean", "similarity", "ridge", "transport")
GRID = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, np.inf)  # x the median distance (or penalty scale)


def type_responses(Z: np.ndarray, cell_type: np.ndarray, condition: np.ndarray, control: str,
                   stimulated: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The types seen in both conditions, their control means and their δs (types x dims)."""
    types = sorted(set(cell_type[condition == control]) & set(cell_type[condition == stimulated]))
    if len(types) < 2:
        raise ValueError(f"a type-dependent response needs at least 2 training cell types seen "
                         f"in both conditions, found {len(types)}")
    means = np.stack([Z[(cell_type == t) & (condition == control)].mean(0) for t in types])
    stims = np.stack([Z[(cell_type == t) & (condition == stimulated)].mean(0) for t in types])
    return types, means, stims - means


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0))


def kernel_delta(means: np.ndarray, deltas: np.ndarray, target: np.ndarray, bandwidth: float
                 ) -> np.ndarray:
    """Gaussian-kernel-weighted mean of ``deltas`` for a type whose control mean is ``target``."""
    if np.isinf(bandwidth):
        return deltas.mean(0)
    d = np.sqrt(((means - target) ** 2).sum(1))
    logits = -0.5 * (d / bandwidth) ** 2
    weights = np.exp(logits - logits.max())
    return weights @ deltas / weights.sum()


def ridge_delta(means: np.ndarray, deltas: np.ndarray, target: np.ndarray, penalty: float
                ) -> np.ndarray:
    """Kernel ridge regression (linear kernel) of δ on the control mean, evaluated at ``target``."""
    centre, mean_delta = means.mean(0), deltas.mean(0)
    if np.isinf(penalty):
        return mean_delta
    M = means - centre
    K = M @ M.T
    alpha = np.linalg.solve(K + penalty * np.eye(len(K)), deltas - mean_delta)
    return mean_delta + (M @ (target - centre)) @ alpha


def choose(fit, means: np.ndarray, deltas: np.ndarray, grid: np.ndarray) -> float:
    """The grid value whose leave-one-type-out error over the training types is smallest
    (ties to the larger value: the smoother, closer to the plain mean)."""
    errors = []
    for value in grid:
        error = 0.0
        for t in range(len(means)):
            others = np.arange(len(means)) != t
            error += ((fit(means[others], deltas[others], means[t], value) - deltas[t]) ** 2).sum()
        errors.append(error)
    errors = np.asarray(errors)
    best = np.flatnonzero(errors <= errors.min() * (1 + 1e-9))
    return float(grid[best[-1]])


def bandwidth_grid(means: np.ndarray) -> np.ndarray:
    scale = np.median(_pairwise(means, means)[np.triu_indices(len(means), 1)])
    return np.asarray(GRID) * max(scale, 1e-12)


def penalty_grid(means: np.ndarray) -> np.ndarray:
    M = means - means.mean(0)
    scale = np.trace(M @ M.T) / len(M)
    return np.asarray(GRID) * max(scale, 1e-12)


def sinkhorn(cost: np.ndarray, epsilon: float, iterations: int = 500) -> np.ndarray:
    """Entropic optimal transport between uniform weights (log-domain Sinkhorn): the plan."""
    n, m = cost.shape
    log_a, log_b = np.full(n, -np.log(n)), np.full(m, -np.log(m))
    f, g = np.zeros(n), np.zeros(m)
    for _ in range(iterations):
        f = epsilon * (log_a - _logsumexp((g[None, :] - cost) / epsilon, axis=1))
        g = epsilon * (log_b - _logsumexp((f[:, None] - cost) / epsilon, axis=0))
    return np.exp((f[:, None] + g[None, :] - cost) / epsilon)


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    top = x.max(axis=axis, keepdims=True)
    return (top + np.log(np.exp(x - top).sum(axis=axis, keepdims=True))).squeeze(axis)


def _neighbour_cost(cost: np.ndarray) -> float:
    return max(float(np.median(cost.min(axis=1))), 1e-12)


def _sample(index: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    return index if index.size <= size else rng.choice(index, size, replace=False)


def transport_deltas(Z: np.ndarray, cell_type: np.ndarray, condition: np.ndarray,
                     Z_target: np.ndarray, control: str, stimulated: str,
                     rng: np.random.Generator, epsilon: float = 1.0, max_cells: int = 300
                     ) -> np.ndarray:
    """Per held-out control cell, its response (n_target x dims); see the module docstring.

    ``epsilon`` is relative to each problem's typical nearest-neighbour cost (the
    median over rows of the smallest squared distance), so it does not depend on the
    scale of the embedding, and cells are matched among their neighbours rather than
    spread over every cell type.
    """
    types, _, _ = type_responses(Z, cell_type, condition, control, stimulated)
    sources, responses = [], []
    for t in types:
        ctrl = _sample(np.flatnonzero((cell_type == t) & (condition == control)), max_cells, rng)
        stim = _sample(np.flatnonzero((cell_type == t) & (condition == stimulated)), max_cells, rng)
        cost = _pairwise(Z[ctrl], Z[stim]) ** 2
        plan = sinkhorn(cost, epsilon * _neighbour_cost(cost))
        matched = plan @ Z[stim] / plan.sum(1, keepdims=True)
        sources.append(Z[ctrl])
        responses.append(matched - Z[ctrl])
    sources, responses = np.concatenate(sources), np.concatenate(responses)
    # each held-out cell attends to the training control cells near it (a softmax over
    # distances, as scPRAM's attention): a plan with both marginals fixed would have to
    # use every training cell equally, and its mean response would be the plain mean
    cost = _pairwise(Z_target, sources) ** 2
    logits = -cost / (epsilon * _neighbour_cost(cost))
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    return weights @ responses / weights.sum(1, keepdims=True)


def response(method: str, Z: np.ndarray, cell_type: np.ndarray, condition: np.ndarray,
             Z_target: np.ndarray, control: str, stimulated: str,
             rng: np.random.Generator) -> np.ndarray:
    """The response to add to each of ``Z_target``'s rows: (dims,) or (n_target, dims)."""
    if method not in METHODS[1:]:
        raise ValueError(f"unknown response method {method!r}; known: {METHODS[1:]}")
    if method == "transport":
        return transport_deltas(Z, cell_type, condition, Z_target, control, stimulated, rng)
    _, means, deltas = type_responses(Z, cell_type, condition, control, stimulated)
    target = Z_target.mean(0)
    if method == "similarity":
        return kernel_delta(means, deltas, target, choose(kernel_delta, means, deltas,
                                                          bandwidth_grid(means)))
    return ridge_delta(means, deltas, target, choose(ridge_delta, means, deltas,
                                                     penalty_grid(means)))
