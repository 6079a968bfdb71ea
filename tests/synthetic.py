"""Honestly simulated perturbation data with a known latent shift."""
import anndata as ad
import numpy as np
import pandas as pd


def simulate(n_types=4, cells_per_type=150, n_genes=60, latent_dim=4, shift_scale=1.5, seed=0):
    """Cells from a linear-nonlinear model: x = softplus(W z + b) + noise.

    Each cell type has its own latent centre; stimulation adds the same latent
    vector ``shift`` to every cell type.  Returns the AnnData and ``shift``.
    """
    rng = np.random.default_rng(seed)
    W = rng.normal(0, 1, (latent_dim, n_genes))
    b = rng.normal(0, 0.5, n_genes)
    shift = rng.normal(0, shift_scale, latent_dim)
    centres = rng.normal(0, 1.5, (n_types, latent_dim))
    X, obs = [], []
    for t in range(n_types):
        for condition, offset in (("control", 0.0), ("stimulated", 1.0)):
            z = centres[t] + offset * shift + rng.normal(0, 0.5, (cells_per_type, latent_dim))
            expression = np.log1p(np.exp(z @ W + b))  # softplus: non-negative
            X.append(expression + np.abs(rng.normal(0, 0.05, expression.shape)))
            obs += [(f"type{t}", condition)] * cells_per_type
    obs = pd.DataFrame(obs, columns=["cell_type", "condition"])
    obs.index = [f"cell{i}" for i in range(len(obs))]
    var = pd.DataFrame(index=[f"gene{g}" for g in range(n_genes)])
    return ad.AnnData(np.concatenate(X).astype(np.float32), obs=obs, var=var), shift, W
