"""The parts added last: the training store, the record's imports, the dry run, the PCA path.

Each case of docs/robustness.md's "store, record and dry run" table is a test here:
data, weights or labels that are not what they claim to be, stores and records
that are moved, copied or shared, and checks the dry run must make like the run.
"""
import errno
import os
import shutil
import sqlite3
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

import scgen_ablation as sa
from scgen_ablation import (ablation_record, data, experiment, planning, pools, runner, stages,
                            store, tracking, trainings)
from scgen_ablation.paths import SHARED_DATA

from synthetic import simulate

KANG = SHARED_DATA / "kang_pbmc_scgen.h5ad"
needs_kang = pytest.mark.kang


@pytest.fixture
def on_disk(tmp_path):
    adata, _, _ = simulate(n_types=3, cells_per_type=40, n_genes=30)
    path = tmp_path / "sim.h5ad"
    adata.write_h5ad(path)
    return sa.load(path)


def tiny(**changes):
    return sa.ScGenConfig(hidden_sizes=(16, 16), latent_dim=4, epochs=3, n_bootstrap=0, n_degs=10,
                          held_out_cell_type="type0",
                          early_stopping_patience=None).replace(**changes)


def key_of(adata, config):
    return config.replace(keep_best=False).training_key(adata.uns["source_sha256"])


# --- the training store: an entry is what its key says, or it is set aside ----------------

@pytest.mark.parametrize("other", [{"epochs": 30}, {"hidden_sizes": (32, 32)}])
def test_an_entry_copied_onto_another_key_is_set_aside_and_trained_again(on_disk, training_store,
                                                                          other):
    made = experiment.run(on_disk, tiny(), store=training_store, progress=False)
    wanted = tiny(**other)
    shutil.copy(training_store.path(key_of(on_disk, tiny())),
                training_store.path(key_of(on_disk, wanted)))
    with pytest.warns(UserWarning, match="was made by another training.*moved aside"):
        again = experiment.run(on_disk, wanted, store=training_store, progress=False)
    assert not again.model.reused and made.model.config.epochs == 3
    assert len(again.model.history) == wanted.epochs
    assert again.model.module.encoder[0][0].out_features == wanted.hidden_sizes[0]
    assert list(training_store.root.glob(f"{key_of(on_disk, wanted)}.pt.bad-*"))
    assert training_store.get(key_of(on_disk, wanted), on_disk.uns["source_sha256"]) is not None


@pytest.mark.parametrize("content", [os.urandom(4096), b"", b"PK\x03\x04 not a torch file"])
def test_a_corrupt_entry_is_moved_aside_with_a_warning_naming_it(on_disk, training_store, content):
    key = key_of(on_disk, tiny())
    training_store.root.mkdir(parents=True, exist_ok=True)
    training_store.path(key).write_bytes(content)
    with pytest.warns(UserWarning, match=f"{key}.pt.*cannot be read.*moved aside.*safe to delete"):
        result = experiment.run(on_disk, tiny(), store=training_store, progress=False)
    assert not result.model.reused and training_store.has(key)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert experiment.run(on_disk, tiny(), store=training_store, progress=False).model.reused


def test_random_bytes_never_suggest_the_unsafe_loader(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"\x80\x02" + os.urandom(2000))
    with pytest.raises(ValueError) as error:
        sa.TrainedModel.load(tmp_path / "x.pt")
    assert "x.pt" in str(error.value) and "weights_only=False" not in str(error.value).replace(
        "never load it with weights_only=False", "")


def read_only(monkeypatch):
    """What a read-only mount does to the store: no lock file, no new file, no rename."""
    real_open = open

    def refusing_open(path, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, mode, *args, **kwargs)

    def refusing(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(store, "open", refusing_open, raising=False)
    monkeypatch.setattr(store.os, "replace", refusing)
    monkeypatch.setattr(sa.TrainedModel, "save", refusing)


def test_a_read_only_store_is_read_and_never_written(on_disk, training_store, monkeypatch):
    experiment.run(on_disk, tiny(), store=training_store, progress=False)
    read_only(monkeypatch)
    assert experiment.run(on_disk, tiny(), store=training_store, progress=False).model.reused
    with pytest.warns(UserWarning, match="cannot be written.*not stored"):
        fresh = experiment.run(on_disk, tiny(seed=1), store=training_store, progress=False)
    assert not fresh.model.reused and not training_store.has(key_of(on_disk, tiny(seed=1)))


# --- the model-free path checks genes like the model path -----------------------------------

def test_the_pca_path_refuses_training_and_target_cells_with_other_genes(on_disk):
    split = data.split_held_out(on_disk, tiny())
    renamed = split.ctrl_target.copy()
    renamed.var_names = [f"other{i}" for i in range(renamed.n_vars)]
    with pytest.raises(ValueError, match="other genes.*0 shared"):
        sa.predict(None, split.train, renamed, tiny(delta_space="pca"))
    reordered = split.ctrl_target[:, ::-1].copy()
    with pytest.raises(ValueError, match="another order"):
        sa.predict(None, split.train, reordered, tiny(delta_space="pca"))


# --- the hold-out rule: one rule, checked before any training --------------------------------

def few_stimulated(tmp_path, n_stim=4):
    """Simulated data where type3 has only ``n_stim`` stimulated cells."""
    adata, _, _ = simulate(n_types=4, cells_per_type=30, n_genes=20)
    few = (adata.obs.cell_type == "type3") & (adata.obs.condition == "stimulated")
    keep = ~few.to_numpy()
    keep[np.flatnonzero(few)[:n_stim]] = True
    path = tmp_path / "few.h5ad"
    adata[keep].copy().write_h5ad(path)
    return path


def test_a_type_below_the_rule_cannot_be_held_out_and_all_leaves_it_out(tmp_path):
    adata = sa.load(few_stimulated(tmp_path))
    with pytest.raises(ValueError, match="'type3' has 30 'control' and 4 'stimulated' cells"):
        data.split_held_out(adata, tiny(held_out_cell_type="type3"))
    with pytest.warns(UserWarning, match="3 of 4 cell types"):
        assert data.held_out_types(adata.obs, tiny(), "all") == ["type0", "type1", "type2"]


def test_no_other_type_seen_in_both_conditions_is_refused_before_training(tmp_path):
    adata, _, _ = simulate(n_types=2, cells_per_type=30, n_genes=20)
    adata = adata[~((adata.obs.cell_type == "type1") & (adata.obs.condition == "control"))].copy()
    with pytest.raises(ValueError, match="no other cell type is seen in both"):
        data.split_held_out(adata, tiny())


@needs_kang
def test_stage_05_on_all_types_plans_only_those_the_rule_allows(tmp_path):
    path = few_stimulated(tmp_path)
    jobs = planning.with_checksums(planning.plan("quick", stages=["05_scgen"],
                                             extra_parameters={"dataset": str(path)}))
    assert jobs[0].cell_types == ["type0", "type1", "type2"]
    assert "type3" not in jobs[0].training_key


# --- the dry run makes every check the run makes ----------------------------------------

def run_main(capsys, *argv):
    code = runner.main(["--profile", "quick", "--stages", "01_autoencoder", *argv])
    return code, capsys.readouterr().err


@needs_kang
@pytest.mark.parametrize("argv, message", [
    (["--cpus-per-job", "-2"], "are for --executor ray"),
    (["--executor", "ray", "--cpus-per-job", "-2"], "must be > 0"),
    (["--executor", "ray", "--address", "nonsense"], "is not 'auto', HOST:PORT"),
    (["--store", "/proc/1/nope"], "cannot be created"),
    (["-p", "held_out_cell_type", "Platelet"], "'Platelet' not in obs"),
    (["-p", "overrides", "[1, 2]"], "overrides must map config fields"),
])
@pytest.mark.parametrize("dry", [True, False])
def test_the_dry_run_refuses_what_the_run_refuses(capsys, tmp_path, argv, message, dry):
    uri = tracking.store_uri(tmp_path / "mlruns")
    code, err = run_main(capsys, *argv, *(["--dry-run"] if dry else []), "--tracking-uri", uri,
                         "--out", str(tmp_path / "runs"))
    assert code == 2 and message in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@needs_kang
def test_the_dry_run_refuses_ray_when_it_is_not_installed(capsys, monkeypatch):
    def no_ray():
        raise planning.UsageError("--executor ray needs Ray, which is not installed")

    monkeypatch.setattr(pools, "import_ray", no_ray)
    assert run_main(capsys, "--executor", "ray", "--dry-run") == (
        2, "runner: --executor ray needs Ray, which is not installed\n")


def test_a_profile_without_seeds_is_refused_before_any_store_is_made(tmp_path, capsys):
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(yaml.safe_dump({"p": {"stages": ["01_autoencoder"], "seeds": []}}))
    uri = f"sqlite:///{tmp_path}/s/mlflow.db"
    code = runner.main(["--profile", "p", "--profiles", str(profiles), "--tracking-uri", uri])
    assert code == 2 and "'seeds' must be a non-empty list" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.fixture
def stage_copy(tmp_path, monkeypatch):
    """A copy of the stage files that the stages module reads instead of ablation/stages."""
    folder = tmp_path / "stages"
    folder.mkdir()
    for path in stages.stage_files().values():
        (folder / path.name).write_text(path.read_text())
    monkeypatch.setattr(stages, "STAGES_DIR", folder)
    return folder


def test_a_misspelt_variant_key_names_its_own_variant(stage_copy):
    folder = stage_copy
    beyond = yaml.safe_load((folder / "07_beyond.yaml").read_text())
    first, *rest = beyond["variants"]
    last = rest[-1]
    beyond["variants"][last] = {**(beyond["variants"][last] or {}), "delta_metod": "ridge"}
    (folder / "07_beyond.yaml").write_text(yaml.safe_dump(beyond, sort_keys=False))
    with pytest.raises(stages.StageError, match=rf"variants\.{last}: unknown config field.*"
                                                r"delta_metod"):
        stages.load_stage("07_beyond")


# --- MLflow: runs and stores that are not what they claim ----------------------------------

def test_a_notebook_cannot_attach_to_a_run_its_runner_closed(tracking_store):
    client = MlflowClient(tracking_store)
    experiment_id = tracking.setup(tracking_store, "kang")
    run = client.create_run(experiment_id, run_name="01_autoencoder-CD4T-0")
    client.set_terminated(run.info.run_id, "FINISHED")
    client.set_tag(run.info.run_id, "runner_status", "FINISHED")
    with pytest.raises(ValueError, match="closed run.*closed by the runner as FINISHED"):
        tracking.start(run.info.run_id, uri=tracking_store)
    after = client.get_run(run.info.run_id)
    assert after.info.status == "FINISHED" and after.data.tags["runner_status"] == "FINISHED"


def test_a_copied_store_writes_into_itself_and_a_moved_one_does_not_recreate_the_old(tmp_path):
    original = tracking.store_uri(tmp_path / "A")
    client = MlflowClient(original)
    old_run = client.create_run(tracking.setup(original, "kang"))
    (tmp_path / "note.txt").write_text("hello")
    client.log_artifact(old_run.info.run_id, str(tmp_path / "note.txt"))
    client.set_terminated(old_run.info.run_id)
    shutil.copytree(tmp_path / "A", tmp_path / "B")
    shutil.rmtree(tmp_path / "A")  # moved: the original is gone
    copy = f"sqlite:///{tmp_path / 'B' / 'mlflow.db'}"
    experiment_id = tracking.setup(copy, "kang")
    client = MlflowClient(copy)
    new_run = client.create_run(experiment_id)
    client.log_artifact(new_run.info.run_id, str(tmp_path / "note.txt"))
    assert not (tmp_path / "A").exists()
    assert (tmp_path / "B" / "artifacts").is_dir()
    for run_id in (old_run.info.run_id, new_run.info.run_id):
        uri = client.get_run(run_id).info.artifact_uri
        assert uri.startswith((tmp_path / "B" / "artifacts").as_uri())
        assert [f.path for f in client.list_artifacts(run_id)] == ["note.txt"]


def test_a_locked_store_says_so_and_what_to_do(tmp_path):
    uri = tracking.store_uri(tmp_path / "s")
    tracking.setup(uri, "kang")
    holder = sqlite3.connect(tmp_path / "s" / "mlflow.db", isolation_level=None)
    holder.execute("begin exclusive")
    try:
        with pytest.raises(tracking.StoreLocked, match="stayed locked.*another process"):
            tracking.retry(MlflowClient(uri).create_experiment, "other", attempts=2)
    finally:
        holder.execute("rollback")
        holder.close()


# --- the record: imports are checked against the plan and the schema --------------------

@pytest.fixture
def record(tmp_path):
    """A record holding one planned row of stage 01 (quick profile, CD4T, seed 0)."""
    item = ablation_record.wanted("quick", ["01_autoencoder"])[0]
    row = {**{k: item[k] for k in ablation_record.KEY}, "training_key": item["training_key"],
           "scoring_key": item["scoring_key"], "prediction_version": item["prediction_version"],
           "status": "ok", "r2_mean_all": 0.5}
    path = tmp_path / "record.csv"
    pd.DataFrame([row]).to_csv(path, index=False)
    return path, row


def import_rows(tmp_path, record_path, rows):
    source = tmp_path / "rows.csv"
    pd.DataFrame(rows).to_csv(source, index=False)
    return ablation_record.main(["--profile", "quick", "--stages", "01_autoencoder", "--out",
                                 str(record_path), "--import-csv", str(source), "--no-mlflow"])


@needs_kang
@pytest.mark.parametrize("change, message", [
    ({"stage": "99_fake", "held_out_cell_type": "NotAType", "seed": 7}, "not in the plan"),
    ({"seed": "zero"}, "seed is not a whole number"),
    ({"training_key": "0123456789abcdef"}, "made by another training"),
    ({"prediction_version": 1}, "scored on another prediction version"),
    ({"scoring_key": "0123456789abcdef"}, "scored with other prediction or evaluation fields"),
    ({"r2_mean_all": "high"}, "'r2_mean_all' holds values that are not numbers"),
])
def test_an_import_that_is_not_a_planned_row_is_refused_whole(tmp_path, record, capsys, change,
                                                              message):
    path, row = record
    before = path.read_bytes()
    assert import_rows(tmp_path, path, [{**row, **change}]) == 2
    assert message in capsys.readouterr().err and path.read_bytes() == before
    assert ablation_record.main(["--profile", "quick", "--stages", "01_autoencoder", "--out",
                                 str(path), "--dry-run"]) == 0


@needs_kang
def test_an_import_with_one_key_twice_is_refused(tmp_path, record, capsys):
    path, row = record
    assert import_rows(tmp_path, path, [row, {**row, "r2_mean_all": 0.9}]) == 2
    assert "given more than once" in capsys.readouterr().err


@needs_kang
def test_an_import_replaces_a_stale_row_and_never_a_current_one(tmp_path, record):
    path, row = record
    pd.DataFrame([{**row, "prediction_version": 1}]).to_csv(path, index=False)  # stale
    assert import_rows(tmp_path, path, [{**row, "r2_mean_all": 0.7}]) == 0
    assert pd.read_csv(path)[["prediction_version", "r2_mean_all"]].values.tolist() == \
        [[row["prediction_version"], 0.7]]
    assert import_rows(tmp_path, path, [{**row, "r2_mean_all": 0.9}]) == 0  # now current: kept
    assert pd.read_csv(path)["r2_mean_all"].tolist() == [0.7]


@needs_kang
def test_a_planned_row_is_imported(tmp_path, record, capsys):
    path, row = record
    item = [i for i in ablation_record.wanted("quick", ["01_autoencoder"],
                                              parameters={"seed": 1})][0]
    assert import_rows(tmp_path, path, [{**row, "seed": 1,
                                         "training_key": item["training_key"]}]) == 2
    # seed 1 is not in the quick plan: it joins only when planned
    source = tmp_path / "rows.csv"
    assert ablation_record.main(["--profile", "quick", "--stages", "01_autoencoder", "-p", "seed",
                                 "1", "--out", str(path), "--import-csv", str(source),
                                 "--no-mlflow"]) == 0
    assert sorted(pd.read_csv(path)["seed"]) == [0, 1]


@needs_kang
def test_one_import_takes_the_rows_of_every_preset(tmp_path, record):
    path, row = record
    item = ablation_record.wanted("quick", ["01_autoencoder"],
                                  parameters={"preset_name": "kang_picks"})[0]
    assert item["variant"] == "kang_picks" and row["variant"] == "paper"
    picks = {**row, **{k: item[k] for k in ("variant", "training_key", "scoring_key")}}
    assert import_rows(tmp_path, path, [row, picks]) == 0
    assert sorted(pd.read_csv(path)["variant"]) == ["kang_picks", "paper"]


@pytest.mark.parametrize("content", ["", "dataset,stage,variant,held_out_cell_type,seed\n"])
def test_the_report_of_an_empty_record_says_so(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(SystemExit, match="holds no rows yet|cannot be read as a CSV"):
        ablation_record.main(["--report", "--out", str(path), "--figures", str(tmp_path)])


def test_the_store_lists_and_prunes_by_age_and_by_record(on_disk, training_store, tmp_path, capsys):
    experiment.run(on_disk, tiny(), store=training_store, progress=False)
    experiment.run(on_disk, tiny(seed=1), store=training_store, progress=False)
    kept = key_of(on_disk, tiny())
    assert trainings.main(["list", "--store", str(training_store.root)]) == 0
    listed = capsys.readouterr().out
    assert kept in listed and "2 trainings" in listed and "MB" in listed
    record = tmp_path / "record.csv"
    pd.DataFrame([{"training_key": kept}]).to_csv(record, index=False)
    trainings.main(["prune", "--store", str(training_store.root), "--unused-by", str(record)])
    assert len(training_store.keys()) == 2  # without --yes it only says what it would delete
    trainings.main(["prune", "--store", str(training_store.root), "--unused-by", str(record), "--yes"])
    assert training_store.keys() == {kept}
    trainings.main(["prune", "--store", str(training_store.root), "--older-than", "1", "--yes"])
    assert training_store.keys() == {kept}  # made today


def test_pruning_by_a_file_that_is_not_a_record_deletes_nothing(on_disk, training_store, tmp_path):
    experiment.run(on_disk, tiny(), store=training_store, progress=False)
    other = tmp_path / "other.csv"
    pd.DataFrame([{"key": "x"}]).to_csv(other, index=False)
    with pytest.raises(SystemExit):
        trainings.main(["prune", "--store", str(training_store.root), "--unused-by", str(other),
                        "--yes"])
    assert len(training_store.keys()) == 1


def test_a_stage_pick_that_is_not_one_of_its_variants_is_refused(stage_copy):
    folder = stage_copy
    text = (folder / "03_kl_weighting.yaml").read_text().replace('pick: "kl_weight=5e-05"',
                                                                  'pick: "kl_weight=5e-5"')
    (folder / "03_kl_weighting.yaml").write_text(text)
    with pytest.raises(stages.StageError, match="pick 'kl_weight=5e-5' is not one of its variants"):
        stages.load_stage("03_kl_weighting")
