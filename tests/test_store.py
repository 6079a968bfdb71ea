"""The training store: one training, saved once, reused by every variant that needs it."""
import warnings

import numpy as np
import pytest

import scgen_ablation as sa
from scgen_ablation import experiment
from scgen_ablation.store import TrainingStore, fingerprint

from synthetic import simulate


@pytest.fixture
def on_disk(tmp_path):
    """Simulated data written to and loaded from an h5ad file, as users' data are."""
    adata, _, _ = simulate(n_types=3, cells_per_type=60, n_genes=40)
    path = tmp_path / "sim.h5ad"
    adata.write_h5ad(path)
    return sa.load(path)


@pytest.fixture
def config():
    return sa.ScGenConfig(hidden_sizes=(32, 32), latent_dim=4, epochs=4, n_bootstrap=0,
                          n_degs=10, held_out_cell_type="type0", early_stopping_patience=None)


def test_a_training_is_saved_once_and_reused_with_its_history(on_disk, config, training_store):
    seen = []
    first = experiment.run(on_disk, config, store=training_store, progress=False)
    again = experiment.run(on_disk, config, store=training_store, progress=False,
                           callback=lambda epoch, record: seen.append(epoch))
    key = config.training_key(on_disk.uns["source_sha256"])
    assert training_store.keys() == {key}
    assert not first.model.reused and again.model.reused
    assert seen == [1, 2, 3, 4]  # the stored history replayed for the new run's logs
    assert again.metrics == first.metrics
    assert again.model.train_seconds == first.model.train_seconds > 0
    assert not list(training_store.root.glob("*.tmp"))  # written atomically


def test_prediction_variants_reuse_and_training_variants_train(on_disk, config, training_store):
    experiment.run(on_disk, config, store=training_store, progress=False)
    unbalanced = experiment.run(on_disk, config.replace(balance_delta=False, n_degs=12),
                                store=training_store, progress=False)
    assert unbalanced.model.reused and len(training_store.keys()) == 1
    other = experiment.run(on_disk, config.replace(kl_weight=0.1), store=training_store,
                           progress=False)
    assert not other.model.reused and len(training_store.keys()) == 2
    held_out = experiment.run(on_disk, config.replace(held_out_cell_type="type1"),
                              store=training_store, progress=False)
    assert not held_out.model.reused and len(training_store.keys()) == 3


def test_keep_best_is_applied_to_a_stored_training_as_to_a_fresh_one(on_disk, config,
                                                                     training_store):
    config = config.replace(epochs=12, learning_rate=0.05)  # a noisy run: best != last
    fresh = experiment.run(on_disk, config.replace(keep_best=True), progress=False)
    experiment.run(on_disk, config, store=training_store, progress=False)
    stored = experiment.run(on_disk, config.replace(keep_best=True), store=training_store,
                            progress=False)
    assert stored.model.reused
    assert stored.model.best_epoch == fresh.model.best_epoch
    for name, value in fresh.model.module.state_dict().items():
        assert np.allclose(value.numpy(), stored.model.module.state_dict()[name].numpy()), name


def test_data_changed_after_loading_are_never_matched_to_a_stored_training(on_disk, config,
                                                                           training_store):
    experiment.run(on_disk, config, store=training_store, progress=False)
    changed = on_disk.copy()
    changed.X = changed.X * 1.01
    assert fingerprint(changed) != fingerprint(on_disk)
    with pytest.warns(UserWarning, match="other data"):
        result = experiment.run(changed, config, store=training_store, progress=False)
    assert not result.model.reused


def test_without_a_store_or_a_data_file_nothing_is_stored(on_disk, config, training_store):
    in_memory = on_disk.copy()
    del in_memory.uns["source_sha256"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        experiment.run(in_memory, config, store=training_store, progress=False)
        experiment.run(on_disk, config, progress=False)
    assert training_store.keys() == set()


def test_the_store_folder_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SCGEN_TRAINING_STORE", str(tmp_path / "elsewhere"))
    assert TrainingStore().root == tmp_path / "elsewhere"
