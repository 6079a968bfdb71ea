"""The ablation record: the profile's rows, one training each, resumable, and its report."""
import io
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from scgen_ablation import ablation_record, planning, stages
from scgen_ablation.config import ScGenConfig
from scgen_ablation.record import Record

pytestmark = [pytest.mark.kang]

PROFILE = {"tiny": {
    "stages": ["01_autoencoder", "02_vae", "03_kl_weighting", "04_balancing"],
    "held_out": ["NK cells"], "seeds": [0],
    "parameters": {"dataset": "kang_100genes", "preprocess": True, "epochs": 2, "n_bootstrap": 0,
                   "n_degs": 20},
    "stage_parameters": {"03_kl_weighting": {"variants": ["kl_weight=5e-05", "kl_weight=1"]}},
}}


@pytest.fixture
def profiles(tmp_path):
    path = tmp_path / "profiles.yaml"
    path.write_text(yaml.safe_dump(PROFILE))
    return path


def test_stage_variants_come_from_the_stage_files():
    assert list(stages.variants_of("03_kl_weighting"))[1] == "kl_weight=5e-05"
    assert stages.variants_of("04_balancing")["unbalanced delta"] == {"balance_delta": False}
    assert stages.variants_of("01_autoencoder") == {"paper": {}}  # none: one, the preset's
    six = stages.variants_of("06_small_data", {"training_levers": ["dropout 0.5"]})
    assert "dropout 0.5" in six and "ReLU output" not in six and "residual decoding" in six
    with pytest.raises(stages.StageError, match="unknown variant"):
        stages.variants_of("03_kl_weighting", {"variants": ["kl_weight=7"]})


def test_the_dry_run_counts_every_variants_training_and_the_stored_ones(profiles,
                                                                         training_store):
    jobs = planning.with_checksums(planning.plan("tiny", profiles_path=profiles))
    printed = io.StringIO()
    planning.dry_run(jobs, printed, store=training_store)
    count = json.loads(printed.getvalue().strip().splitlines()[-1])
    # 01: the autoencoder; 02: beta 1 (03's too); 03: beta 5e-5 (04's too); 04: balanced training
    assert count == {"jobs": 4, "unique_trainings": 4, "stored": 0}


def test_the_record_trains_each_training_once_resumes_and_reports(profiles, tmp_path, capsys,
                                                                   training_store):
    out = tmp_path / "record.csv"
    common = ["--profiles", str(profiles), "--profile", "tiny", "--out", str(out), "--no-mlflow"]
    assert ablation_record.main(common) == 0
    table = pd.read_csv(out)
    assert len(table) == 7 and set(table["status"]) == {"ok"}
    assert len(training_store.keys()) == 4  # seven rows, four trainings
    printed = io.StringIO()
    planning.dry_run(planning.with_checksums(planning.plan("tiny", profiles_path=profiles)), printed,
                   store=training_store)
    assert json.loads(printed.getvalue().splitlines()[-1])["stored"] == 4
    shared = table[table["variant"].isin(["kl_weight=5e-05", "unbalanced delta"])]
    assert shared["training_key"].nunique() == 1 and shared["r2_mean_all"].nunique() == 1
    for metric in ("r2_mean_all", "pcc_delta_top100", "deg_overlap_top100", "edistance",
                   "gene_arith_edistance"):
        assert table[metric].notna().all(), metric
    # a rerun makes nothing; a lost row is made again, from the stored training
    capsys.readouterr()
    assert ablation_record.main(common) == 0
    assert "0 to make" in capsys.readouterr().out
    table.iloc[1:].to_csv(out, index=False)
    assert ablation_record.main(common) == 0
    again = pd.read_csv(out)
    assert len(again) == 7 and again["reused"].astype(str).str.lower().eq("true").sum() == 1
    # rows made elsewhere join the record; the report needs only the CSV
    other = tmp_path / "other.csv"
    elsewhere = ["--profiles", str(profiles), "--profile", "tiny", "--no-mlflow", "-p", "seed", "1"]
    assert ablation_record.main(elsewhere + ["--out", str(other)]) == 0
    assert ablation_record.main(common + ["--import-csv", str(other)]) == 2  # seed 1: not planned
    assert ablation_record.main(common + ["-p", "seed", "[0, 1]", "--import-csv", str(other)]) == 0
    assert len(pd.read_csv(out)) == 14
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- report: ablation-ladder -->\n<!-- /report -->\n")
    assert ablation_record.main(common + ["--report", "--dataset", "kang_100genes",
                                          "--figures", str(tmp_path), "--doc", str(doc)]) == 0
    ladder = doc.read_text()
    assert "01 plain autoencoder" in ladder and "gene-space arithmetic" in ladder
    assert "over 2 held-out runs" in ladder and (tmp_path / "ablation_ladder.png").stat().st_size


def test_a_diverged_training_is_recorded_not_retried(profiles, tmp_path, capsys):
    out = tmp_path / "record.csv"
    common = ["--profiles", str(profiles), "--profile", "tiny", "--stages", "01_autoencoder",
              "--out", str(out), "--no-mlflow", "-p", "learning_rate", "1e12"]
    assert ablation_record.main(common) == 0
    row = pd.read_csv(out).iloc[0]
    assert row["status"] == "diverged" and "nan" in row["error"].lower()
    capsys.readouterr()
    assert ablation_record.main(common) == 0
    assert "0 to make" in capsys.readouterr().out


def test_the_study_rows_join_the_record_only_where_they_are_the_same_experiment(tmp_path):
    items = ablation_record.wanted("full", stages=["04_balancing", "06_small_data"])
    study = pd.read_csv(ablation_record.STUDY_TRAINING)
    same = study[(study.lever == "balanced training batches") & (study.prediction == "paper")
                 & (study.cell_type == "NK") & (study.seed == 1)]
    other = study[(study.lever == "dropout 0.5") & (study.prediction != "paper")].head(1)
    changed = same.assign(lever="200 epochs", prediction="residual decoding")  # not planned
    path = tmp_path / "study.csv"
    pd.concat([same, other, changed]).to_csv(path, index=False)

    rows = pd.DataFrame(ablation_record.from_study(items, path))
    # one training and prediction, two planned rows: stage 04's and stage 06's
    assert sorted(zip(rows.stage, rows.variant)) == [
        ("04_balancing", "balanced delta + balanced training"),
        ("06_small_data", "balanced training batches")]
    assert set(rows.held_out_cell_type) == {"NK"} and set(rows.seed) == {1}
    assert (rows.r2_mean_all == same.r2_mean_all.iloc[0]).all()
    assert set(rows.source) == {"study.csv"} and "pcc_delta_all" not in rows  # never computed


def test_the_study_rows_fill_missing_rows_and_never_replace_a_recorded_one(tmp_path, monkeypatch):
    # the study's rows are version 1 (stale today): they may fill a gap, never overwrite
    items = ablation_record.wanted("full", stages=["04_balancing", "06_small_data"])
    study = pd.read_csv(ablation_record.STUDY_TRAINING)
    same = study[(study.lever == "balanced training batches") & (study.prediction == "paper")
                 & (study.cell_type == "NK") & (study.seed == 1)]
    path = tmp_path / "study.csv"
    same.to_csv(path, index=False)
    made = ablation_record.from_study(items, path)
    out = tmp_path / "record.csv"
    pd.DataFrame([{**made[0], "r2_mean_all": -1.0}]).to_csv(out, index=False)
    monkeypatch.setattr(ablation_record, "from_study", lambda planned: made)
    assert ablation_record.main(["--profile", "full", "--stages", "04_balancing", "06_small_data",
                                 "--from-study", "--out", str(out), "--no-mlflow"]) == 0
    after = pd.read_csv(out)
    assert len(after) == 2 and after["r2_mean_all"].iloc[0] == -1.0


def test_a_field_added_later_keeps_the_keys_of_the_trainings_made_before_it():
    # the record's paper rows were keyed before early_stopping_min_delta existed
    record = pd.read_csv(ablation_record.RECORD)
    before = record[(record.dataset == "kang") & (record.stage == "05_scgen")
                    & (record.variant == "paper")]
    items = {(i["held_out_cell_type"], i["seed"]): i
             for i in ablation_record.wanted("full", stages=["05_scgen"])}
    for row in before.itertuples():
        assert items[(row.held_out_cell_type, row.seed)]["training_key"] == row.training_key
    item = next(iter(items.values()))
    config = ScGenConfig.from_dict(item["config"])
    changed = config.replace(early_stopping_min_delta=0.01)
    assert changed.training_key(item["data_sha256"]) != item["training_key"]
    assert changed.digest() != config.digest()


def _append_rows(path, first, count):
    record = Record(path)
    for i in range(first, first + count):
        record.append([{"dataset": "d", "stage": "s", "variant": "v", "held_out_cell_type": f"t{i}",
                        "seed": 0,
                        "r2_mean_all": 0.5}])


def test_two_processes_appending_to_one_record_lose_no_rows(tmp_path):
    import multiprocessing

    path = tmp_path / "record.csv"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_append_rows, args=(path, first, 100)) for first in (0, 100)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=300)
        assert writer.exitcode == 0
    assert sorted(pd.read_csv(path)["held_out_cell_type"]) == sorted(f"t{i}" for i in range(200))


def test_a_record_with_its_own_key_replaces_a_rerun_and_keeps_its_columns(tmp_path):
    # the stopping benchmark's runs: one row per (rule, type, seed), columns as written
    record = Record(tmp_path / "runs.csv", key=["rule", "cell_type", "seed"],
                                    leading=[])
    record.append([{"rule": "a", "cell_type": "B", "seed": 0, "r2_mean_all": 0.5, "device": "cpu"}])
    record.append([{"rule": "a", "cell_type": "NK", "seed": 0, "r2_mean_all": 0.6, "device": "cpu"}])
    record.append([{"rule": "a", "cell_type": "B", "seed": 0, "r2_mean_all": 0.7, "device": "cpu"}])
    table = record.read()
    assert list(table.columns) == ["rule", "cell_type", "seed", "r2_mean_all", "device"]
    assert table.set_index("cell_type")["r2_mean_all"].to_dict() == {"NK": 0.6, "B": 0.7}


def test_a_row_made_by_another_training_scoring_or_prediction_version_is_stale_and_remade(tmp_path):
    # a preset's change alters a planned row's training key, a variant's prediction fields its
    # scoring key, and a change of what predict returns (prediction.PREDICTION_VERSION) how
    # every row is scored: each way the old row no longer holds
    from scgen_ablation.prediction import PREDICTION_VERSION

    assert PREDICTION_VERSION > 1
    items = [{"dataset": "kang", "stage": "05_scgen", "variant": "recommended",
              "held_out_cell_type": t, "seed": 0, "training_key": f"new-{t}",
              "scoring_key": "residual", "prediction_version": PREDICTION_VERSION}
             for t in ("B", "NK", "CD4T", "CD8T")]
    made = (("B", "old-B", "residual", PREDICTION_VERSION),      # another training
            ("NK", "new-NK", "residual", PREDICTION_VERSION),    # as planned
            ("CD4T", "new-CD4T", "residual", 1),                 # older prediction code
            ("CD8T", "new-CD8T", "decoded", PREDICTION_VERSION))  # other prediction fields
    done = pd.DataFrame([{"dataset": "kang", "stage": "05_scgen", "variant": "recommended",
                          "held_out_cell_type": t, "seed": 0, "training_key": key,
                          "scoring_key": scoring, "prediction_version": version, "status": "ok"}
                         for t, key, scoring, version in made])
    assert [item["held_out_cell_type"] for item in ablation_record.stale(items, done)] == [
        "B", "CD4T", "CD8T"]
    assert [[i["held_out_cell_type"] for i in unit]
            for unit in ablation_record.pending_units(items, done)] == [["B"], ["CD4T"], ["CD8T"]]
    for column in ("prediction_version", "scoring_key"):  # rows from before the column
        assert len(ablation_record.stale(items, done.drop(columns=column))) == 4, column
    record = Record(tmp_path / "record.csv")
    record.append(done.to_dict("records"))
    for item in (items[0], items[2], items[3]):  # the remade rows replace the stale ones
        record.append([{**item, "status": "ok"}])
    assert ablation_record.pending_units(items, record.read()) == []


def test_a_row_the_record_holds_under_another_name_is_copied_not_trained_again():
    # stage 03 at beta 1 is stage 02's training and scoring, 04's balanced delta is 05's
    # paper row: planned again (say after a rescoring), each is copied from its twin
    from scgen_ablation.prediction import PREDICTION_VERSION

    items = [i for i in ablation_record.wanted("full", stages=["02_vae", "03_kl_weighting",
                                                                "04_balancing", "05_scgen"])
             if (i["held_out_cell_type"], i["seed"]) == ("B", 0)]
    source = {("02_vae", "paper"): 0.81, ("05_scgen", "paper"): 0.92}
    done = pd.DataFrame([{**{k: i[k] for k in ablation_record.KEY + ablation_record.MADE_BY},
                          "status": "ok", "device": "cpu", "r2_mean_all": source[i["stage"], i["variant"]]}
                         for i in items if (i["stage"], i["variant"]) in source])
    copies = ablation_record.twins(items, done)
    assert {(c["stage"], c["variant"], c["r2_mean_all"]) for c in copies} == {
        ("03_kl_weighting", "kl_weight=1", 0.81), ("04_balancing", "balanced delta", 0.92)}
    assert all(c["reused"] and c["prediction_version"] == PREDICTION_VERSION for c in copies)
    record = pd.concat([done, pd.DataFrame(copies)], ignore_index=True)
    left = {(i["stage"], i["variant"]) for unit in ablation_record.pending_units(items, record)
            for i in unit}
    assert left and not left & {("03_kl_weighting", "kl_weight=1"), ("04_balancing", "balanced delta")}
    # only a scored row of this code's prediction version is a twin
    assert ablation_record.twins(items, done.assign(prediction_version=1)) == []
    assert ablation_record.twins(items, done.assign(status="diverged")) == []


def test_a_row_no_later_prediction_version_changed_is_carried_forward_not_remade():
    # version 3 changed only mean_space="pca"'s prediction: a version-2 row of any other
    # config is what this code scores, and counts as current; version 1 (before the clip
    # that changed every prediction) never does, nor a row made by another training
    from scgen_ablation.prediction import PREDICTION_CHANGES, PREDICTION_VERSION

    assert not PREDICTION_CHANGES[PREDICTION_VERSION][1](ScGenConfig())
    before = PREDICTION_VERSION - 1
    plain, centred = ScGenConfig(held_out_cell_type="B"), ScGenConfig(held_out_cell_type="B",
                                                                      mean_space="pca")
    items = [{"dataset": "kang", "stage": "07_beyond", "variant": variant,
              "held_out_cell_type": "B", "seed": seed, "training_key": "t",
              "scoring_key": config.scoring_key(), "prediction_version": PREDICTION_VERSION,
              "config": config.to_dict()}
             for variant, config in (("plain", plain), ("centred", centred)) for seed in (0, 1)]
    made = {("plain", 0): ("t", before), ("centred", 0): ("t", before),
            ("plain", 1): ("t", 1), ("centred", 1): ("t", PREDICTION_VERSION)}
    done = pd.DataFrame([{**{k: item[k] for k in ("dataset", "stage", "variant",
                                                   "held_out_cell_type", "seed", "scoring_key")},
                          "training_key": made[item["variant"], item["seed"]][0],
                          "prediction_version": made[item["variant"], item["seed"]][1],
                          "status": "ok", "r2_mean_all": 0.9} for item in items])
    by_key = {tuple(item[k] for k in ablation_record.KEY): item for item in items}
    carried = ablation_record.carried_forward(done, by_key)
    assert carried[["variant", "seed"]].values.tolist() == [["plain", 0]]
    assert (carried["prediction_version"] == PREDICTION_VERSION).all()
    assert carried["r2_mean_all"].tolist() == [0.9]  # the numbers stay; only the version moves
    assert ablation_record.carried_forward(done.assign(training_key="other"), by_key).empty
    # an import made on the older version: accepted where it changed nothing, else refused
    imported = ablation_record.checked_import(done.iloc[[0]], by_key, "import.csv")
    assert imported[0]["prediction_version"] == PREDICTION_VERSION
    with pytest.raises(ValueError, match="another prediction version"):
        ablation_record.checked_import(done.iloc[[2]], by_key, "import.csv")


def test_the_dataset_verdicts_are_what_the_committed_record_says():
    # docs/datasets.md's rules, recomputed from the record: the committed CSV must agree
    from scgen_ablation.reports import common, datasets

    committed = pd.read_csv(datasets.VERDICTS)
    recomputed = datasets.rule_verdicts(common.load(ablation_record.RECORD))
    assert not committed.empty
    pd.testing.assert_frame_equal(recomputed.reset_index(drop=True), committed, check_dtype=False)


def test_a_rule_that_a_dataset_cannot_judge_yet_is_named_not_left_out():
    from scgen_ablation.reports import datasets

    first, second, third = (rule[0] for rule in datasets.DATASET_RULES)
    verdicts = pd.DataFrame({"dataset": ["a", "a", "b"], "prediction_version": 3,
                             "rule": [first, first, first], "metric": ["r2_mean_all"] * 3,
                             "runs": 3, "types": 3, "mean_difference": [0.01, -0.2, 0.0],
                             "margin": -0.01, "passed": ["yes", "no", "yes"]})
    lines = datasets.verdicts_block(verdicts, ["a", "b", "c"]).splitlines()[-3:]
    lacking = "latest prediction version lack this rule's pair"
    assert lines == [f"- **{first}**: fails on a; passes on b; not judged yet on c: the rows of "
                     f"its {lacking}",
                     f"- **{second}**: not judged yet on a, b, c: the rows of their {lacking}",
                     f"- **{third}**: not judged yet on a, b, c: the rows of their {lacking}"]


def test_rows_on_an_older_prediction_version_are_left_out_of_the_tables_and_said_so():
    """A dataset part-way through a rescoring: its tables and verdicts take the rows of its
    latest version only, and the rescoring block names what they leave out, per stage."""
    from scgen_ablation.reports import common, datasets

    record = common.load(ablation_record.RECORD)
    haber = record[record["dataset"] == "haber"].copy()
    assert datasets.rescoring_block(haber) == ("(every dataset's rows are on its latest "
                                               "prediction version)")
    newest = haber["prediction_version"].max()
    older = haber["stage"].isin(["01_autoencoder", "02_vae"])  # as if not rescored yet
    haber.loc[older, "prediction_version"] = newest - 1
    block = datasets.rescoring_block(haber)
    assert block.startswith(f"**haber**: {older.sum()} of its {len(haber)} rows are on an older "
                            f"prediction version than its latest ({newest}); its tables show "
                            f"the other {(~older).sum()}")
    assert "| 01_autoencoder |" in block and "| 02_vae " in block and "05_scgen" not in block
    # the tables and the rules' verdicts never mix the two versions
    shown = datasets.components(haber)
    assert not shown["method"].str.startswith(("01 ", "02 ")).any()
    assert datasets.rule_verdicts(haber)["prediction_version"].eq(newest).all()


def test_the_docs_and_figures_are_drawn_from_the_committed_record(tmp_path):
    """Every generated block and figure of the record's report, byte for byte (the README
    names the command; the per-dataset tables included)."""
    import subprocess
    import sys

    root = ablation_record.PROJECT_ROOT
    copies = []
    for name in ablation_record.REPORTED_DOCS:
        copies.append(tmp_path / name.replace("/", "_"))
        copies[-1].write_text((root / name).read_text())
    figures = tmp_path / "figures"
    done = subprocess.run([sys.executable, "-m", "scgen_ablation.ablation_record", "--report",
                           "--figures", str(figures), "--doc", *map(str, copies)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    command = "python -m scgen_ablation.ablation_record --report"
    for name, copy in zip(ablation_record.REPORTED_DOCS, copies):
        assert copy.read_text() == (root / name).read_text(), f"{name} is stale: run {command}"
    drawn = sorted(figures.glob("*.png"))
    assert drawn
    for figure in drawn:
        assert figure.read_bytes() == (root / "docs" / "figures" / figure.name).read_bytes(), \
            f"docs/figures/{figure.name} is stale: run {command}"


def test_result_run_names_are_short_and_tell_every_recorded_row_apart():
    from scgen_ablation import tracking
    from scgen_ablation.reports.common import load

    table = load(ablation_record.RECORD)
    names = [tracking.result_name(*row) for row in table[
        ["stage", "variant", "held_out_cell_type", "seed"]].itertuples(index=False)]
    table = table.assign(name=names)
    assert (table.groupby("dataset")["name"].nunique() == table.groupby("dataset").size()).all()
    assert tracking.result_name("07_beyond", "PCA · per-cell transport", "CD4T", 0) == \
        "07 PCA transport · CD4T · 0"


def test_the_record_loads_into_mlflow_once_as_result_runs_the_comparison_leaves_out(tmp_path):
    from mlflow.tracking import MlflowClient

    from scgen_ablation import comparison, tracking
    from scgen_ablation.reports.common import latest, load

    table = load(ablation_record.RECORD)
    table = latest(table[table["dataset"] == "kang"])  # one experiment, whatever the order
    sample = pd.concat([table[table["stage"] == "05_scgen"].head(3),
                        table[table["stage"] == "07_beyond"].head(2)])
    uri = tracking.store_uri(tmp_path / "mlruns")
    assert ablation_record.to_mlflow(sample, uri) == 5
    assert ablation_record.to_mlflow(sample, uri) == 0  # idempotent
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("kang").experiment_id],
                              "tags.source = 'record'")
    first = sample.iloc[0]
    named = {r.info.run_name: r for r in runs}
    run = named[tracking.result_name(first["stage"], first["variant"],
                                     first["held_out_cell_type"], first["seed"])]
    assert run.info.status == "FINISHED" and run.data.tags["device"] == str(first["device"])
    assert run.data.tags["prediction_version"] == str(first["prediction_version"])
    assert run.data.metrics["r2_mean_all"] == round(first["r2_mean_all"], 4)
    colours = {r.data.tags["stage"]: r.data.tags["mlflow.runColor"] for r in runs}
    assert colours == {s: tracking.STAGE_COLOURS[s] for s in ("05", "07")}  # as the notebooks'
    assert comparison.result_runs(tracking.runs_table("kang", uri=uri)).empty
    # a row the record no longer holds (remade by another training, renamed) leaves the UI
    renamed = sample.assign(variant=sample["variant"].where(sample.index != sample.index[0], "x"))
    assert ablation_record.to_mlflow(renamed, uri) == 1
    runs = client.search_runs([client.get_experiment_by_name("kang").experiment_id],
                              "tags.source = 'record'")
    assert len(runs) == 5 and run.info.run_id not in {r.info.run_id for r in runs}
    # a row on an older prediction version than its dataset's latest is in no table, so in
    # no run; rescored (same training, the latest version), it is logged again
    older = renamed.copy()
    older.loc[older.index[1], "prediction_version"] -= 1
    assert ablation_record.to_mlflow(older, uri) == 0
    assert len(client.search_runs([client.get_experiment_by_name("kang").experiment_id],
                                  "tags.source = 'record'")) == 4
    assert ablation_record.to_mlflow(renamed, uri) == 1


def test_every_result_run_is_written_one_way(tracking_store, tmp_path):
    """tracking.result_run: the ablation record's rows, the study's rows and the notebooks'
    variants all get the same name, tags and colour; nested under a stage run or alone."""
    import threading

    import mlflow
    from mlflow.tracking import MlflowClient

    from scgen_ablation import study, tracking

    row = {"dataset": "kang", "stage": "07_beyond", "variant": "PCA · per-cell transport",
           "held_out_cell_type": "CD4T", "seed": 0, "training_key": "k", "device": "cpu",
           "r2_mean_all": 0.91, "edistance": float("nan")}
    ablation_record.log_rows([row], {}, "kang", threading.Lock())  # a run of its own
    tracking.start(experiment="kang", run_name="06_small_data-NK-1")
    study.log_rows([{"lever": "paper", "cell_type": "NK", "seed": 1, "r2_mean_all": 0.8}],
                   ScGenConfig(epochs=3))
    with pytest.raises(RuntimeError):
        with tracking.result_run("07_beyond", "scGen delta", "NK", 1):
            raise RuntimeError("scoring failed")
    parent = mlflow.active_run().info.run_id
    tracking.finish()
    assert mlflow.active_run() is None

    client = MlflowClient(tracking_store)
    runs = {r.info.run_name: r for r in client.search_runs(
        [client.get_experiment_by_name("kang").experiment_id], "tags.level = 'result'")}
    alone, nested, failed = (runs["07 PCA transport · CD4T · 0"], runs["06 paper · NK · 1"],
                             runs["07 scGen δ · NK · 1"])
    assert "mlflow.parentRunId" not in alone.data.tags
    assert {nested.data.tags["mlflow.parentRunId"], failed.data.tags["mlflow.parentRunId"]} == {parent}
    assert (alone.info.status, nested.info.status, failed.info.status) == (
        "FINISHED", "FINISHED", "FAILED")
    for run, stage in ((alone, "07"), (nested, "06"), (failed, "07")):
        assert run.data.tags["stage"] == stage
        assert run.data.tags["mlflow.runColor"] == tracking.STAGE_COLOURS[stage]
    assert alone.data.tags["device"] == "cpu" and alone.data.tags["source"] == "ablation_record"
    assert alone.data.metrics == {"r2_mean_all": 0.91}  # no seed, no NaN
    assert nested.data.params["held_out_cell_type"] == "NK" and nested.data.params["seed"] == "1"
    scores = json.loads(Path(client.download_artifacts(alone.info.run_id, "scores.json",
                                                       str(tmp_path))).read_text())
    assert scores["variant"] == row["variant"] and scores["edistance"] is None


def test_what_is_left_to_do_is_answered_once(tmp_path):
    """record.pending: missing rows, and with made_by the rows another training made (stale);
    seeds read back from the CSV match planned integer seeds."""
    from scgen_ablation.record import pending

    record = Record(tmp_path / "r.csv", key=["rule", "cell_type", "seed"], leading=[])
    record.append([{"rule": "a", "cell_type": "B", "seed": 0, "made": "k1", "r2": 0.5},
                   {"rule": "a", "cell_type": "NK", "seed": 1, "made": "k1", "r2": 0.6}])
    planned = [{"rule": "a", "cell_type": t, "seed": s, "made": "k1"}
               for s in (0, 1) for t in ("B", "NK")]
    done = record.read()
    assert pending(planned, done, record.key) == [planned[1], planned[2]]
    moved = [{**row, "made": "k2"} if row["cell_type"] == "NK" else row for row in planned]
    assert pending(moved, done, record.key, made_by="made") == moved[1:]  # NK seed 1: stale
    assert pending(planned, done.iloc[:0], record.key) == planned
