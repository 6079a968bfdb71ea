"""Loading, preprocessing, the hold-out split and balancing."""
import anndata as ad
import numpy as np
import pytest

import scgen_ablation as sa
from scgen_ablation import data

pytestmark = pytest.mark.kang


def test_kang_resolves_in_order_path_env_cache_shared(tmp_path, monkeypatch):
    explicit = tmp_path / "explicit.h5ad"
    explicit.write_bytes(b"x")
    from_env = tmp_path / "env.h5ad"
    from_env.write_bytes(b"x")
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setattr(data, "CACHE_DIR", cache)
    monkeypatch.delenv("SCGEN_KANG_PATH", raising=False)

    assert data.resolve_path("kang") == data.SHARED_DATA / "kang_pbmc_scgen.h5ad"
    (cache / "kang_pbmc_scgen.h5ad").write_bytes(b"x")
    assert data.resolve_path("kang") == cache / "kang_pbmc_scgen.h5ad"
    monkeypatch.setenv("SCGEN_KANG_PATH", str(from_env))
    assert data.resolve_path("kang") == from_env
    assert data.resolve_path("kang", path=explicit) == explicit


def test_download_checks_sha256(tmp_path, monkeypatch):
    source = tmp_path / "remote.h5ad"
    source.write_bytes(b"some bytes")
    good = data.Dataset("k.h5ad", data.sha256sum(source), "X", url=source.as_uri())
    assert data.download(good, tmp_path / "cache" / "k.h5ad").read_bytes() == b"some bytes"
    bad = data.Dataset("k2.h5ad", "0" * 64, "X", url=source.as_uri())
    with pytest.raises(OSError, match="sha256"):
        data.download(bad, tmp_path / "cache" / "k2.h5ad")
    assert not (tmp_path / "cache" / "k2.h5ad").exists()


def test_kang_is_the_checked_scgen_split(kang):
    assert kang.shape == (1975, 6998)
    assert data.sha256sum(kang.uns["source_file"]) == data.DATASETS["kang"].sha256
    assert data.looks_log_normalised(kang.X) and not data.looks_like_counts(kang.X)


def test_preprocessing_counts_gives_log_normalised_hvgs():
    raw = ad.read_h5ad(data.resolve_path("kang_counts"))
    assert data.looks_like_counts(raw.X)
    processed = data.preprocess(raw, n_top_genes=1500)
    assert processed.n_vars == 1500
    assert data.looks_log_normalised(processed.X)
    assert float(processed.X.max()) < 15
    # counts are kept, and a second pass never logs twice
    assert data.looks_like_counts(processed.layers["counts"])
    with pytest.warns(UserWarning, match="already looks log-normalised"):
        again = data.preprocess(processed, n_top_genes=1500, min_genes=0, min_cells=0)
    np.testing.assert_allclose(again.X.toarray() if hasattr(again.X, "toarray") else again.X,
                               processed.X.toarray() if hasattr(processed.X, "toarray") else processed.X)


def test_load_refuses_raw_counts_unless_asked():
    with pytest.raises(ValueError, match="raw counts"):
        sa.load("kang_counts")
    processed = sa.load("kang_counts", preprocess_counts=True, n_top_genes=500)
    assert processed.n_vars == 500


def test_split_holds_out_exactly_the_target_stimulated_cells(kang):
    split = sa.split_held_out(kang, sa.ScGenConfig(held_out_cell_type="NK"))
    obs = kang.obs
    target_stim = obs.index[(obs.cell_type == "NK") & (obs.condition == "stimulated")]
    assert set(split.truth.obs_names) == set(target_stim)
    assert not set(split.train.obs_names) & set(target_stim)
    assert split.train.n_obs == kang.n_obs - len(target_stim)
    assert (split.ctrl_target.obs.condition == "control").all()
    assert (split.ctrl_target.obs.cell_type == "NK").all()


def test_cells_of_a_third_condition_are_left_out_of_training(kang):
    # e.g. a second infection in the same file: not part of control -> stimulated
    third = kang.copy()
    condition = third.obs["condition"].astype(str).to_numpy()
    condition[:50] = "other infection"
    third.obs["condition"] = condition
    with pytest.warns(UserWarning, match="50 cells of other conditions left out"):
        split = sa.split_held_out(third, sa.ScGenConfig(held_out_cell_type="NK"))
    assert not set(split.train.obs_names) & set(third.obs_names[:50])
    assert set(split.train.obs["condition"]) == {"control", "stimulated"}
    obs = third.obs
    kept = obs.condition.isin(["control", "stimulated"])
    nk_stimulated = (obs.cell_type == "NK") & (obs.condition == "stimulated")
    assert split.train.n_obs == int((kept & ~nk_stimulated).sum())
    assert split.truth.n_obs == int(nk_stimulated.sum())


def test_balance_resamples_every_type_to_the_largest():
    labels = np.array(["a"] * 10 + ["b"] * 3 + ["c"])
    index = data.balance(labels, np.random.default_rng(0))
    picked = labels[index]
    assert {k: (picked == k).sum() for k in "abc"} == {"a": 10, "b": 10, "c": 10}
    again = data.balance(labels, np.random.default_rng(0))
    np.testing.assert_array_equal(index, again)  # seeded


def test_balance_to_a_size_keeps_the_epoch_length():
    labels = np.array(["a"] * 10 + ["b"] * 3 + ["c"])
    index = data.balance(labels, np.random.default_rng(0), size=labels.size)
    picked = labels[index]
    assert {k: (picked == k).sum() for k in "abc"} == {"a": 5, "b": 5, "c": 5}  # ceil(14 / 3)
