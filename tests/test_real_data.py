"""scGen on the real Kang split, CD4T held out, a few epochs."""
import pytest

import scgen_ablation as sa
from scgen_ablation import training

pytestmark = [pytest.mark.kang, pytest.mark.slow]


def test_cd4t_prediction_beats_control_and_truth_never_reaches_training(kang, monkeypatch):
    seen = {}
    real_train = training.train  # what experiment.run trains through (store.train_stored)

    def spy(adata, config, **kwargs):
        seen["obs_names"] = set(adata.obs_names)
        return real_train(adata, config, **kwargs)

    monkeypatch.setattr(training, "train", spy)
    # the paper configuration needs ~15 epochs here to beat control on all genes
    config = sa.preset("paper", held_out_cell_type="CD4T", epochs=15, n_bootstrap=10)
    result = sa.run(kang, config, progress=False)

    truth = set(result.split.truth.obs_names)
    assert len(truth) > 0 and not truth & seen["obs_names"]
    assert seen["obs_names"] == set(result.split.train.obs_names)
    assert result.prediction.n_obs == result.split.ctrl_target.n_obs
    assert list(result.prediction.var_names) == list(kang.var_names)
    assert result.metrics["r2_mean_all"] > result.metrics["control_r2_mean_all"]
    assert result.metrics["r2_mean_top100"] > result.metrics["control_r2_mean_top100"]
