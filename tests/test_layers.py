"""One path from a stage file to a trained model: the config layers, the dry run, the checks.

preset -> stage file -> profile -> what the user passes -> overrides.
"""
import io
import json
from pathlib import Path

import pytest
import yaml

from scgen_ablation import planning, runner, stages
from scgen_ablation.paths import NOTEBOOK_DIR

needs_kang = pytest.mark.kang  # the runner reads and checksums the Kang file


@pytest.fixture
def stage_dir(tmp_path, monkeypatch):
    """A copy of the stage files whose 02_vae sets a learning rate."""
    folder = tmp_path / "stages"
    folder.mkdir()
    for path in stages.stage_files().values():
        (folder / path.name).write_text(path.read_text())
    vae = yaml.safe_load((folder / "02_vae.yaml").read_text())
    vae["config"]["learning_rate"] = 1.0e-4
    (folder / "02_vae.yaml").write_text(yaml.safe_dump(vae))
    monkeypatch.setattr(stages, "STAGES_DIR", folder)
    return folder


def profiles(tmp_path, **profile) -> Path:
    path = tmp_path / "profiles.yaml"
    path.write_text(yaml.safe_dump({"p": {"stages": ["02_vae"], **profile}}))
    return path


def only_config(jobs):
    assert len(jobs) == 1
    return jobs[0].config


@needs_kang
def test_a_stage_file_value_reaches_the_config_unless_a_later_layer_sets_it(stage_dir, tmp_path):
    plain = profiles(tmp_path, parameters={"epochs": 3})
    assert only_config(planning.plan("p", profiles_path=plain)).learning_rate == 1e-4
    assert only_config(planning.plan("p", profiles_path=plain)).kl_weight == 1.0  # the stage's own
    by_profile = profiles(tmp_path, parameters={"learning_rate": 3e-4})
    assert only_config(planning.plan("p", profiles_path=by_profile)).learning_rate == 3e-4
    by_stage_parameters = profiles(tmp_path, parameters={"learning_rate": 3e-4},
                                   stage_parameters={"02_vae": {"learning_rate": 2e-4}})
    assert only_config(planning.plan("p", profiles_path=by_stage_parameters)).learning_rate == 2e-4
    by_user = planning.plan("p", profiles_path=by_profile, extra_parameters={"learning_rate": 5e-4})
    assert only_config(by_user).learning_rate == 5e-4
    by_overrides = planning.plan("p", profiles_path=by_profile, extra_parameters={
        "epochs": 7, "overrides": {"epochs": 9}})
    assert only_config(by_overrides).epochs == 9


@needs_kang
def test_the_dry_run_prints_every_jobs_effective_config(stage_dir, tmp_path):
    jobs = planning.with_checksums(planning.plan("quick"))
    out = io.StringIO()
    planning.dry_run(jobs, out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[-1]["jobs"] == len(jobs) == len(lines) - 1
    by_stage = {line["stage"]: line for line in lines[:-1]}
    assert by_stage["02_vae"]["config"]["learning_rate"] == 1e-4
    assert by_stage["02_vae"]["config"]["epochs"] == 15  # the quick profile's
    assert by_stage["03_kl_weighting"]["config"]["epochs"] == 10  # its stage_parameters
    assert by_stage["00_data"]["training_key"] is None  # trains nothing
    assert set(by_stage["05_scgen"]["training_key"]) == {
        "B", "CD14+Mono", "CD4T", "CD8T", "Dendritic", "FCGR3A+Mono", "NK"}
    for line in lines[:-1]:
        assert {"stage", "run_name", "config", "training_key"} <= set(line)


def test_the_training_key_ignores_what_does_not_change_training():
    from scgen_ablation import preset
    paper = preset("paper")
    same = paper.replace(prediction_mode="residual", balance_delta=False, n_bootstrap=3, device="cpu")
    assert same.training_key("abc") == paper.training_key("abc")
    for changed in (paper.replace(dropout=0.5), paper.replace(seed=1),
                    paper.replace(held_out_cell_type="NK")):
        assert changed.training_key("abc") != paper.training_key("abc")
    assert paper.training_key("abc") != paper.training_key("abd")  # other data



def test_the_scoring_key_is_what_changes_a_prediction_or_its_evaluation_only():
    from scgen_ablation import preset
    paper = preset("paper")
    assert paper.replace(dropout=0.5, seed=1, device="cpu", num_threads=1).scoring_key() == \
        paper.scoring_key()  # training and where it runs: the training key's business
    for changed in (paper.replace(prediction_mode="residual"), paper.replace(mean_space="pca"),
                    paper.replace(n_degs=50), paper.replace(n_bootstrap=3)):
        assert changed.scoring_key() != paper.scoring_key()


def test_every_notebook_builds_its_config_through_open_stage():
    for path in sorted(NOTEBOOK_DIR.glob("*.ipynb")):
        source = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])
        assert "stages.open_stage(" in source, path.name
        assert "stage_config(" not in source and "sa.preset(" not in source, path.name


@pytest.mark.parametrize("extra, message", [
    ({"dropoutt": 0.5}, r"-p \['dropoutt'\]: not a parameter or config field"),
    ({"dropout": 1.5}, r"dropout must be in \[0, 1\)"),
    ({"hidden_sizes": "256"}, "'hidden_sizes' must be a list"),
])
@needs_kang
def test_parameters_are_never_dropped(extra, message):
    with pytest.raises(planning.UsageError, match=message):
        planning.plan("quick", stages=["02_vae"], extra_parameters=extra)


@needs_kang
def test_a_config_field_passed_with_p_reaches_the_config():
    config = only_config(planning.plan("quick", stages=["02_vae"], extra_parameters={"dropout": 0.5}))
    assert config.dropout == 0.5


@needs_kang
def test_an_explicit_held_out_type_or_seed_replaces_that_axis_of_the_grid():
    jobs = planning.plan("full", stages=["02_vae", "05_scgen"],
                       extra_parameters={"held_out_cell_type": "NK", "seed": 4})
    assert [j.run_name for j in jobs] == ["02_vae-NK-4", "05_scgen-4"]
    assert jobs[0].config.held_out_cell_type == "NK"
    assert jobs[1].parameters["held_out_cell_types"] == ["NK"]


@needs_kang
def test_a_relative_dataset_path_is_read_from_the_callers_folder(tmp_path):
    from scgen_ablation.paths import SHARED_DATA
    (tmp_path / "my.h5ad").symlink_to(SHARED_DATA / "kang_pbmc_scgen.h5ad")
    caller = tmp_path / "analysis"
    caller.mkdir()
    jobs = planning.plan("quick", stages=["02_vae"], caller_dir=caller,
                       extra_parameters={"dataset": "../my.h5ad"})
    assert jobs[0].config.dataset == str(tmp_path.resolve() / "my.h5ad")


@pytest.mark.parametrize("text, message", [
    ("notebook: 02_vae.ipynb\nconfg:\n  kl_weight: 1.0\n", "unknown key 'confg'"),
    ("notebook: 02_vae.ipynb\nconfig:\n  kl_weigth: 1.0\n", "unknown config key.*kl_weigth"),
    ("notebook: 02_vae.ipynb\nconfig: [1, 2]\n", "'config' must be a dict"),
    ("notebook: 02_vae.ipynb\ngrid: cells\n", "grid 'cells' is not one of"),
])
def test_stage_files_are_checked_against_their_schema(tmp_path, text, message):
    (tmp_path / "02_vae.yaml").write_text(text)
    with pytest.raises(stages.StageError, match=f"02_vae.yaml.*{message}"):
        stages.load_stage("02_vae", tmp_path)


@pytest.mark.parametrize("profile, message", [
    ({"stage_parameter": {}}, "unknown key 'stage_parameter'"),
    ({"parameter": {"epochs": 1}}, "unknown key 'parameter'"),
    ({"held_out": "CD4T"}, "'held_out' must be a list"),
    ({"seeds": ["zero"]}, "'seeds' must be a list of whole numbers"),
    ({"stages": ["02_vea"]}, "unknown stage '02_vea'"),
    ({"stage_parameters": {"02_vae": {"kl_weigths": [1]}}}, "'kl_weigths' is neither"),
    ({"parameters": {"epochz": 1}}, r"parameters: \['epochz'\] is neither"),
])
@needs_kang
def test_profiles_are_checked_against_their_schema(tmp_path, profile, message):
    path = tmp_path / "profiles.yaml"
    path.write_text(yaml.safe_dump({"p": {"stages": ["02_vae"], **profile}}))
    with pytest.raises(planning.UsageError, match=message):
        planning.plan("p", profiles_path=path)
    code = runner.main(["--profiles", str(path), "--profile", "p", "--tracking-uri",
                        f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"])
    assert code == 2 and not (tmp_path / "store").exists()  # refused before any run


@needs_kang
def test_an_out_folder_that_is_a_file_is_refused_before_any_run(tmp_path):
    (tmp_path / "somefile").write_text("")
    code = runner.main(["--stages", "02_vae", "--out", str(tmp_path / "somefile"),
                        "--tracking-uri", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"])
    assert code == 2 and not (tmp_path / "store").exists()


def test_only_runs_their_runner_closed_finished_count():
    import pandas as pd
    from scgen_ablation import comparison

    runs = pd.DataFrame([
        # a runner's job closed FINISHED, and its nested result
        {"run_id": "a", "status": "FINISHED", "tags.runner_job_key": "k1", "tags.runner_status": "FINISHED"},
        {"run_id": "a1", "status": "FINISHED", "tags.mlflow.parentRunId": "a"},
        # a job whose runner died after the notebook ended it FINISHED
        {"run_id": "b", "status": "FINISHED", "tags.runner_job_key": "k2"},
        {"run_id": "b1", "status": "FINISHED", "tags.mlflow.parentRunId": "b"},
        # a run by hand, and a failed one
        {"run_id": "c", "status": "FINISHED"},
        {"run_id": "d", "status": "FAILED"},
    ])
    assert list(runs["run_id"][comparison.counted(runs)]) == ["a", "a1", "c"]


# the package's rooms, in the order of the pipeline: each imports only those before it
# (the command line, runner, last: nothing imports it); reports/ is one room, a module per doc
ORDER = ["config", "paths", "data", "model", "training", "store", "trainings", "responses",
         "prediction", "metrics", "experiment", "plots", "tracking", "stages", "study",
         "comparison", "record", "reports", "planning", "pools", "jobs", "study_record",
         "ablation_record", "runner"]


def test_the_import_graph_runs_one_way():
    import ast

    package = Path(runner.__file__).parent
    rooms = {p.stem: [p] for p in package.glob("*.py") if p.stem != "__init__"}
    rooms |= {d.name: sorted(d.glob("*.py")) for d in package.iterdir() if (d / "__init__.py").exists()}
    assert sorted(ORDER) == sorted(rooms)
    for name in ORDER:
        imported = set()
        for path in rooms[name]:
            depth = 1 if path.parent == package else 2  # from .x in a module, from ..x in a room's
            for node in ast.walk(ast.parse(path.read_text())):  # imports inside functions count too
                if isinstance(node, ast.ImportFrom) and node.level == depth:
                    imported |= ({node.module.split(".")[0]} if node.module  # a room's module: the room
                                 else {a.name for a in node.names})
        for other in imported:
            assert ORDER.index(other) < ORDER.index(name), f"{name} imports {other}, which comes later"
    for script in (package.parents[1] / "benchmarks").glob("*.py"):  # run the CLI, never import it
        text = script.read_text()
        assert "from scgen_ablation.runner import" not in text, script.name
        assert "import scgen_ablation.runner" not in text, script.name
