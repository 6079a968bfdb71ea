"""The field's metrics (docs/metrics.md) against small examples computed by hand."""
import numpy as np
import pytest

from scgen_ablation import metrics


def test_pearson_delta_is_the_correlation_of_the_changes_from_control():
    control = np.zeros((4, 3))
    truth = np.tile([1.0, 2.0, 3.0], (4, 1))
    assert metrics.pearson(np.tile([2.0, 4.0, 6.0], (4, 1)).mean(0) - control.mean(0),
                           truth.mean(0)) == pytest.approx(1.0)
    assert metrics.pearson([3.0, 2.0, 1.0], [1.0, 2.0, 3.0]) == pytest.approx(-1.0)
    assert metrics.pearson([0.0, 0.0, 0.0], [1.0, 2.0, 3.0]) == 0.0  # "no change" scores 0


def test_energy_distance_by_hand():
    a, b = np.array([[0.0], [1.0]]), np.array([[3.0], [5.0]])
    # 2 * mean|a-b| - mean|a-a'| - mean|b-b'| = 2 * (3+5+2+4)/4 - 1 - 2 = 4
    assert metrics.energy_distance(a, b) == pytest.approx(4.0)
    assert metrics.energy_distance(b, a) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="at least 2 cells"):
        metrics.energy_distance(a[:1], b)


def test_energy_distance_of_many_cells_is_estimated_on_a_subset():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3000, 5)), rng.normal(1.0, 1.0, size=(2500, 5))
    whole = metrics.energy_distance(a, b)
    estimate = metrics.energy_distance(a, b, max_cells=1000)
    assert estimate != whole and estimate == pytest.approx(whole, rel=0.05)
    assert metrics.energy_distance(a, b, max_cells=1000) == estimate  # seeded
    assert metrics.energy_distance(a, b, max_cells=3000) == whole  # no side above: exact


def test_energy_distance_sees_spread_that_the_means_do_not():
    rng = np.random.default_rng(0)
    narrow, wide = rng.normal(0, 0.1, (300, 2)), rng.normal(0, 2.0, (300, 2))
    same = rng.normal(0, 2.0, (300, 2))
    assert metrics.energy_distance(narrow, wide) > 10 * abs(metrics.energy_distance(same, wide))


@pytest.fixture
def cells():
    rng = np.random.default_rng(1)
    control = rng.gamma(2.0, 1.0, (60, 12))
    truth = rng.gamma(2.0, 1.0, (60, 12))
    truth[:, :3] += 4.0  # genes 0-2 respond
    genes = [f"g{i}" for i in range(12)]
    return control, truth, genes


def test_a_prediction_that_moves_the_true_degs_finds_them(cells):
    control, truth, genes = cells
    degs = metrics.ranked_genes(truth, control, genes, 3)
    assert set(degs) == {"g0", "g1", "g2"}
    predicted = control.copy()
    predicted[:, :3] += 4.0
    scores = metrics.field_scores(predicted, control, truth, genes, degs, n_components=5)
    assert scores["deg_overlap_top100"] == 1.0 and scores["deg_direction_top100"] == 1.0
    assert scores["pcc_delta_top100"] == pytest.approx(
        np.corrcoef(predicted.mean(0)[:3] - control.mean(0)[:3],
                    truth.mean(0)[:3] - control.mean(0)[:3])[0, 1])
    assert scores["edistance"] < 0.2  # far closer to the truth than control is (1.0)


def test_predicting_no_change_scores_as_control(cells):
    control, truth, genes = cells
    degs = metrics.ranked_genes(truth, control, genes, 3)
    scores = metrics.field_scores(control.copy(), control, truth, genes, degs, n_components=5)
    assert scores["pcc_delta_all"] == 0.0 and scores["deg_direction_top100"] == 0.0
    assert scores["edistance"] == pytest.approx(1.0)  # the scale: control vs truth


def test_moving_the_wrong_genes_is_caught(cells):
    control, truth, genes = cells
    degs = metrics.ranked_genes(truth, control, genes, 3)
    wrong = control.copy()
    wrong[:, 3:6] += 4.0  # the same total change, on other genes
    scores = metrics.field_scores(wrong, control, truth, genes, degs, n_components=5)
    assert scores["deg_overlap_top100"] == 0.0
    assert scores["pcc_delta_all"] < 0.2


def test_genes_that_go_down_count_only_in_the_both_directions_overlap(cells):
    """The paper's top-N is the most up-regulated genes; `direction="both"` ranks by the
    absolute Wilcoxon score, so a strong fall counts as much as a strong rise."""
    control, truth, genes = cells
    truth = truth.copy()
    truth[:, 6:9] = control[:, 6:9] * 0.05  # genes 6-8 nearly switch off
    assert set(metrics.ranked_genes(truth, control, genes, 3)) == {"g0", "g1", "g2"}
    both = metrics.ranked_genes(truth, control, genes, 6, direction="both")
    assert set(both) == {"g0", "g1", "g2", "g6", "g7", "g8"}
    with pytest.raises(ValueError, match="direction"):
        metrics.ranked_genes(truth, control, genes, 3, direction="down")

    rises_only = control.copy()
    rises_only[:, :3] += 4.0  # the rises right, the falls missed
    rises_only[:, 3:6] += 1.0  # and three genes moved a little that should not have
    degs = metrics.ranked_genes(truth, control, genes, 6)  # the paper's: 3 up, then 3 others
    scores = metrics.field_scores(rises_only, control, truth, genes, degs, n_components=5)
    assert scores["deg_overlap_both_top100"] == pytest.approx(0.5)  # g0-g5 found; g6-g8 missed
    both_right = rises_only.copy()
    both_right[:, 6:9] *= 0.05
    scores = metrics.field_scores(both_right, control, truth, genes, degs, n_components=5)
    assert scores["deg_overlap_both_top100"] == 1.0


@pytest.mark.kang
def test_a_real_prediction_is_valid_log_expression_and_cell_eval_scores_it_as_we_do(kang, tmp_path):
    """Issue #30: every prediction the package returns is valid log-expression, so other
    tools accept it, and the metrics are computed on what is returned. cell-eval (an
    independent implementation of the field's metrics) is the oracle: its input check
    refuses negative values, and its pearson_delta is our r of change over all genes."""
    import anndata as ad
    import pandas as pd
    from cell_eval import MetricsEvaluator

    import scgen_ablation as sa
    from scgen_ablation.data import check_expression, dense

    config = sa.preset("recommended", hidden_sizes=(64, 64), latent_dim=10, epochs=3,
                       n_bootstrap=0, held_out_cell_type="CD4T")
    result = sa.run(kang, config, progress=False)
    predicted = dense(result.prediction.X)
    assert predicted.min() == 0.0 and (predicted == 0).mean() > 0.05  # clipped, not shifted
    check_expression(result.prediction.X, "the prediction")  # what the package accepts as input
    for name, baseline in result.baseline_predictions.items():
        assert baseline.min() >= 0, name
    condition, control, stimulated = (config.condition_key, config.control_label,
                                      config.stimulated_label)

    def cells(X, names, label):
        adata = ad.AnnData(X=np.asarray(X, dtype=np.float32),
                           var=pd.DataFrame(index=result.split.truth.var_names))
        adata.obs_names = [f"{name}-{label}" for name in names]
        adata.obs[condition] = label
        return adata

    control_cells = cells(dense(result.split.ctrl_target.X), result.split.ctrl_target.obs_names,
                          control)
    real = ad.concat([control_cells, cells(dense(result.split.truth.X),
                                           result.split.truth.obs_names, stimulated)])

    def cell_eval_scores(X):
        both = ad.concat([control_cells, cells(X, result.prediction.obs_names, stimulated)])
        evaluator = MetricsEvaluator(both, real, control_pert=control, pert_col=condition,
                                     skip_de=True, num_threads=1, outdir=str(tmp_path / "ce"))
        scores, _ = evaluator.compute(profile="anndata", write_csv=False,
                                      skip_metrics=["pearson_edistance", "clustering_agreement"])
        return scores.row(0, named=True)

    assert cell_eval_scores(predicted)["pearson_delta"] == pytest.approx(
        result.metrics["pcc_delta_all"], abs=1e-6)
    with pytest.raises(ValueError, match="negative"):  # the check it would fail unclipped
        cell_eval_scores(predicted - 0.5)
