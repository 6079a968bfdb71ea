"""Responses that depend on the held-out type (responses.py), on simulated data."""
import numpy as np
import pytest

import scgen_ablation as sa
from scgen_ablation import experiment, prediction, responses
from scgen_ablation.data import dense

from synthetic import simulate


def typed_cells(seed=0, n_types=5, cells=80, dims=6):
    """Cell types along a line whose response grows along it (as the myeloid types'
    stronger response): the plain mean of the others' responses misses an outer type."""
    rng = np.random.default_rng(seed)
    axis = np.eye(dims)[0] * 2.0
    direction = rng.normal(0, 1, dims)
    Z, types, conditions = [], [], []
    for t in range(n_types):
        for condition, shift in (("control", 0), ("stimulated", 1)):
            Z.append(t * axis + shift * direction * (1 + 0.5 * t)
                     + rng.normal(0, 0.3, (cells, dims)))
            types += [f"t{t}"] * cells
            conditions += [condition] * cells
    return np.concatenate(Z), np.array(types), np.array(conditions), direction


def test_the_largest_grid_value_gives_back_the_plain_mean_of_the_type_responses():
    Z, types, conditions, _ = typed_cells()
    _, means, deltas = responses.type_responses(Z, types, conditions, "control", "stimulated")
    target = means[0] + 1.0
    assert np.allclose(responses.kernel_delta(means, deltas, target, np.inf), deltas.mean(0))
    assert np.allclose(responses.ridge_delta(means, deltas, target, np.inf), deltas.mean(0))


def test_a_response_that_depends_on_the_type_is_recovered_better_than_one_delta():
    Z, types, conditions, direction = typed_cells()
    held_out = "t3"
    train = ~((types == held_out) & (conditions == "stimulated"))
    target = Z[(types == held_out) & (conditions == "control")]
    truth = direction * (1 + 0.5 * 3)
    rng = np.random.default_rng(0)
    one = responses.type_responses(Z[train], types[train], conditions[train], "control",
                                   "stimulated")[2].mean(0)
    for method in ("ridge", "similarity", "transport"):
        delta = responses.response(method, Z[train], types[train], conditions[train], target,
                                   "control", "stimulated", rng)
        delta = np.atleast_2d(delta).mean(0)
        assert np.linalg.norm(delta - truth) < np.linalg.norm(one - truth), method


def test_parameters_are_chosen_from_the_training_types_alone():
    """The bandwidth and the penalty do not depend on the held-out cells at all."""
    Z, types, conditions, _ = typed_cells()
    _, means, deltas = responses.type_responses(Z, types, conditions, "control", "stimulated")
    h = responses.choose(responses.kernel_delta, means, deltas, responses.bandwidth_grid(means))
    lam = responses.choose(responses.ridge_delta, means, deltas, responses.penalty_grid(means))
    assert np.isfinite(h) and np.isfinite(lam)  # here the types' responses do differ
    same_types, _, _ = responses.type_responses(Z, types, conditions, "control", "stimulated")
    assert len(same_types) == 5


def test_sinkhorn_plans_have_uniform_marginals():
    rng = np.random.default_rng(0)
    cost = rng.random((30, 40))
    plan = responses.sinkhorn(cost, 0.05)
    assert np.allclose(plan.sum(1), 1 / 30, atol=1e-6) and np.allclose(plan.sum(0), 1 / 40, atol=1e-6)


@pytest.mark.parametrize("space", ["latent", "pca"])
@pytest.mark.parametrize("method", ["similarity", "ridge", "transport"])
def test_the_held_out_types_stimulated_cells_never_reach_a_response(monkeypatch, space, method):
    adata, _, _ = simulate(n_types=4, cells_per_type=60, n_genes=30)
    config = sa.ScGenConfig(hidden_sizes=(16, 16), latent_dim=4, epochs=2, n_bootstrap=0,
                            n_degs=10, held_out_cell_type="type1", delta_method=method,
                            delta_space=space)
    split, _ = experiment.prepare(adata, config)
    model = sa.train(split.train, config, progress=False) if space == "latent" else None
    given = {}
    real = prediction.response

    def spy(method, Z, cell_type, condition, Z_target, *args):
        given.update(pairs=set(zip(cell_type, condition)), n=len(Z), targets=len(Z_target))
        return real(method, Z, cell_type, condition, Z_target, *args)

    monkeypatch.setattr(prediction, "response", spy)
    predicted = prediction.predict(model, split.train, split.ctrl_target, config)
    assert ("type1", "stimulated") not in given["pairs"] and ("type1", "control") in given["pairs"]
    assert given["n"] == split.train.n_obs and given["targets"] == split.ctrl_target.n_obs
    assert predicted.n_obs == split.ctrl_target.n_obs
    assert np.isfinite(dense(predicted.X)).all()


def test_pca_space_needs_no_model_and_latent_space_does():
    adata, _, _ = simulate(n_types=3, cells_per_type=40, n_genes=20)
    config = sa.ScGenConfig(n_degs=5, held_out_cell_type="type0", delta_space="pca")
    split, _ = experiment.prepare(adata, config)
    assert prediction.predict(None, split.train, split.ctrl_target, config).n_obs > 0
    with pytest.raises(ValueError, match="a model is needed"):
        prediction.predict(None, split.train, split.ctrl_target, config.replace(delta_space="latent"))


def test_cells_around_the_twins_mean_keep_the_models_spread_and_never_see_the_truth(monkeypatch):
    """mean_space="pca": the latent prediction's cells, moved so that their mean is the PCA
    twin's; neither response it makes is given the held-out type's stimulated cells."""
    adata, _, _ = simulate(n_types=4, cells_per_type=60, n_genes=30)
    config = sa.ScGenConfig(hidden_sizes=(16, 16), latent_dim=4, epochs=2, n_bootstrap=0,
                            n_degs=10, held_out_cell_type="type1", delta_method="ridge",
                            prediction_mode="residual")
    split, _ = experiment.prepare(adata, config)
    model = sa.train(split.train, config, progress=False)
    calls = []
    real = prediction.response

    def spy(method, Z, cell_type, condition, *args):
        calls.append(set(zip(cell_type, condition)))
        return real(method, Z, cell_type, condition, *args)

    monkeypatch.setattr(prediction, "response", spy)
    centred = dense(prediction.predict(model, split.train, split.ctrl_target,
                                       config.replace(mean_space="pca")).X)
    assert len(calls) == 2 and all(("type1", "stimulated") not in pairs for pairs in calls)
    own = dense(prediction.predict(model, split.train, split.ctrl_target, config).X)
    twin = dense(prediction.predict(None, split.train, split.ctrl_target,
                                    config.replace(delta_space="pca")).X)
    # the returned mean is the twin's on every gene (set after the clip at 0), and on the
    # genes where no cell was clipped the spread is the model's
    assert centred.min() >= 0
    np.testing.assert_allclose(centred.mean(0), twin.mean(0), atol=1e-4)
    kept = (centred > 0).all(0) & (own > 0).all(0)
    assert kept.sum() >= 10
    np.testing.assert_allclose((centred - centred.mean(0))[:, kept], (own - own.mean(0))[:, kept],
                               atol=1e-4)
    assert not np.allclose(own.mean(0)[kept], twin.mean(0)[kept], atol=1e-3)  # the mean moved


def test_with_mean_sets_each_genes_mean_after_the_clip_where_shifting_first_does_not():
    rng = np.random.default_rng(0)
    X = rng.normal(0.1, 1.0, size=(300, 50))
    X[:, 3] = 0.25  # every cell the same
    X[:40, 4] = -1.0  # ties below 0
    target = np.abs(rng.normal(0.4, 0.3, 50))
    target[7] = 0.0
    moved = prediction.with_mean(X, target)
    assert moved.min() >= 0 and not moved[:, 7].any()
    np.testing.assert_allclose(moved.mean(0), target, atol=1e-5)
    # cells that stay above 0 keep their differences
    above = moved[:, 0] > 0
    np.testing.assert_allclose(np.ptp(moved[above, 0]), np.ptp(X[above, 0]), rtol=1e-5)
    naive = np.maximum(X - X.mean(0) + target, 0)  # what version 2 returned
    assert np.abs(naive.mean(0) - target).max() > 0.1
    with pytest.raises(ValueError, match="negative"):
        prediction.with_mean(X, -target)


def test_a_row_counts_as_current_only_where_no_later_version_changed_its_prediction():
    plain, centred = sa.ScGenConfig(), sa.ScGenConfig(mean_space="pca")
    latest = prediction.PREDICTION_VERSION
    assert prediction.current_version(latest, centred) == latest
    assert prediction.current_version(1, plain) == 1  # version 2 changed every prediction
    changed_only_some = [v for v, (_, changed) in prediction.PREDICTION_CHANGES.items()
                         if changed(centred) and not changed(plain)]
    assert changed_only_some  # version 3: mean_space="pca" only
    before = min(changed_only_some) - 1
    assert prediction.current_version(before, plain) == latest
    assert prediction.current_version(before, centred) == before
