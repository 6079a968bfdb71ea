"""Latent delta arithmetic, metrics and baselines."""
import numpy as np
import pytest
from scipy import stats

import scgen_ablation as sa
from scgen_ablation import metrics, prediction
from scgen_ablation.data import dense
from synthetic import simulate


def test_known_latent_shift_is_recovered_and_beats_control():
    adata, shift, W = simulate(n_types=4, cells_per_type=200, n_genes=60, seed=0)
    config = sa.ScGenConfig(hidden_sizes=(128, 128), latent_dim=8, epochs=60,
                            held_out_cell_type="type2", n_degs=20, n_bootstrap=0,
                            early_stopping_patience=60, keep_best=True)
    result = sa.run(adata, config, progress=False)
    truth, ctrl = dense(result.split.truth.X), dense(result.split.ctrl_target.X)
    true_change = truth.mean(0) - ctrl.mean(0)
    predicted_change = dense(result.prediction.X).mean(0) - ctrl.mean(0)
    # the decoded delta points the way the simulated shift moves each gene
    assert stats.pearsonr(predicted_change, true_change)[0] > 0.8
    assert result.metrics["r2_mean_all"] > result.metrics["control_r2_mean_all"]
    assert result.metrics["r2_mean_top100"] > result.metrics["control_r2_mean_top100"]


def test_delta_sets_are_balanced_and_equal_sized(kang):
    config = sa.ScGenConfig(held_out_cell_type="CD4T")
    split = sa.split_held_out(kang, config)
    ctrl, stim = prediction.delta_sets(split.train, config, np.random.default_rng(0))
    assert ctrl.size == stim.size
    stim_types = split.train.obs.cell_type.to_numpy()[stim]
    assert "CD4T" not in set(stim_types)  # never seen stimulated
    counts = np.unique(stim_types, return_counts=True)[1]
    assert counts.max() / counts.min() < 1.6  # balanced (then subsampled): no type dominates
    paired = config.replace(delta_cell_types="paired")
    ctrl, _ = prediction.delta_sets(split.train, paired, np.random.default_rng(0))
    assert "CD4T" not in set(split.train.obs.cell_type.to_numpy()[ctrl])


def test_top100_degs_are_100_genes_within_held_out_type(kang):
    import scanpy as sc

    config = sa.ScGenConfig(held_out_cell_type="B")
    split = sa.split_held_out(kang, config)
    degs = metrics.top_degs(split, config)
    assert len(degs) == 100 and len(set(degs)) == 100
    # the same ranking computed by hand on the held-out type alone
    cells = kang[kang.obs.cell_type == "B"].copy()
    sc.tl.rank_genes_groups(cells, "condition", groups=["stimulated"], reference="control",
                            method="wilcoxon", n_genes=100)
    assert degs == list(cells.uns["rank_genes_groups"]["names"]["stimulated"])
    # ... which is not what ranking over all cell types gives
    everyone = kang.copy()
    sc.tl.rank_genes_groups(everyone, "condition", groups=["stimulated"], reference="control",
                            method="wilcoxon", n_genes=100)
    assert degs != list(everyone.uns["rank_genes_groups"]["names"]["stimulated"])


def test_fewer_genes_than_degs_is_an_error(kang):
    config = sa.ScGenConfig(held_out_cell_type="B")
    split = sa.split_held_out(kang[:, :50], config)
    with pytest.raises(ValueError, match="top 100 DEGs of 50 genes"):
        metrics.top_degs(split, config)


def test_r2_is_squared_pearson_as_linregress():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=100), rng.normal(size=100)
    b = a + 0.5 * b
    assert metrics.r2(a, b) == pytest.approx(stats.linregress(a, b).rvalue ** 2)
    assert metrics.r2(a, a) == pytest.approx(1.0)


def test_gene_space_arithmetic_matches_design_figures(kang):
    # balanced gene-space arithmetic as first measured for this project (docs/small_data.md), B .918 / .865 / .639
    config = sa.ScGenConfig(held_out_cell_type="B")
    split = sa.split_held_out(kang, config)
    index = metrics.gene_index(kang.var_names, metrics.top_degs(split, config))
    scores = metrics.score(metrics.gene_space_arithmetic(split, config), dense(split.truth.X), index)
    assert scores["r2_mean_all"] == pytest.approx(0.918, abs=5e-4)
    assert scores["r2_mean_top100"] == pytest.approx(0.865, abs=5e-4)
    assert scores["r2_var_all"] == pytest.approx(0.639, abs=5e-4)


def test_bootstrap_reports_mean_and_sd():
    rng = np.random.default_rng(0)
    real = rng.gamma(np.linspace(0.5, 5, 30), 1, (200, 30))  # genes with different means
    predicted = real + rng.normal(0, 0.3, real.shape)
    out = metrics.bootstrap(predicted, real, np.arange(10), n=20)
    assert set(out) == {f"{m}_boot_{s}" for m in metrics.METRICS for s in ("mean", "sd")}
    assert 0.5 < out["r2_mean_all_boot_mean"] <= 1 and out["r2_mean_all_boot_sd"] > 0


def test_response_agreement_measures_direction_and_size():
    """Held-out type B responds along the same genes as A and C, twice as strongly."""
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(0)
    n_genes, response = 30, rng.normal(0, 1, 30)
    blocks, obs = [], []
    for cell_type, scale in (("A", 1.0), ("B", 2.0), ("C", 1.0)):
        base = rng.uniform(8, 10, n_genes)  # non-negative, as log-expression is
        for condition, shift in (("control", 0.0), ("stimulated", scale)):
            noise = rng.normal(0, 0.5, (10, n_genes))
            blocks.append(base + shift * response + np.vstack([noise, -noise]))  # exact means
            obs += [(cell_type, condition)] * 20
    adata = ad.AnnData(np.vstack(blocks).astype(np.float32),
                       obs=pd.DataFrame(obs, columns=["cell_type", "condition"]).astype("category"))
    config = sa.ScGenConfig(held_out_cell_type="B")
    out = metrics.response_agreement(sa.split_held_out(adata, config), config, np.arange(10))
    assert out["response_r_all"] == pytest.approx(1.0, abs=1e-5)
    assert out["response_r_top100"] == pytest.approx(1.0, abs=1e-5)
    assert out["response_size_top100"] == pytest.approx(2.0, rel=1e-4)
