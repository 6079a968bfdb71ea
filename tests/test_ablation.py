"""The ablation: notebooks through papermill, the runner, MLflow read back."""
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from scgen_ablation import planning, runner, stages, tracking
from scgen_ablation.jobs import run_jobs
from scgen_ablation.paths import NOTEBOOK_DIR
from scgen_ablation.metrics import METRICS
from scgen_ablation.study import PREDICTION_LEVERS

pytestmark = [pytest.mark.kang, pytest.mark.slow]
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

TINY = {
    "stages": ["00_data", "01_autoencoder", "02_vae", "03_kl_weighting", "04_balancing",
               "05_scgen", "06_small_data", "07_beyond", "08_compare"],
    "held_out": ["CD4T"],
    "seeds": [0],
    "parameters": {"epochs": 1, "n_bootstrap": 2},
    "stage_parameters": {
        "03_kl_weighting": {"variants": ["kl_weight=5e-05", "kl_weight=1"]},
        "05_scgen": {"held_out_cell_types": ["B", "NK"]},
        "06_small_data": {"held_out_cell_types": ["NK"],
                          "training_levers": ["latent 20, width 256"]},
        "07_beyond": {"held_out_cell_types": ["NK"],
                      "variants": ["scGen delta", "per-cell transport",
                                   "PCA · per-cell transport"]},
    },
}


def write_profiles(folder: Path, **changes) -> Path:
    path = folder / "profiles.yaml"
    path.write_text(yaml.safe_dump({"tiny": {**TINY, **changes}}))
    return path


def test_committed_notebooks_have_no_outputs_and_one_parameters_cell():
    assert len(NOTEBOOKS) >= 7
    makefile = (NOTEBOOK_DIR.parent / "Makefile").read_text()
    kernel = makefile.split("KERNEL_NAME := ")[1].splitlines()[0]
    for path in NOTEBOOKS:
        # the kernel `make setup` installs, so that opening a notebook does not change it
        assert json.loads(path.read_text())["metadata"]["kernelspec"] == {
            "display_name": kernel, "language": "python", "name": "python3"}, path.name
        cells = json.loads(path.read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert all(not c["outputs"] and c["execution_count"] is None for c in code), path.name
        tagged = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
        assert len(tagged) == 1, path.name
        assert cells[0]["cell_type"] == "markdown", f"{path.name} opens without a narrative"


def test_every_stage_has_a_notebook():
    from scgen_ablation.stages import load_stage, stage_files

    for name in stage_files():
        assert (NOTEBOOK_DIR / load_stage(name)["notebook"]).exists(), name


@pytest.fixture(scope="module")
def ablation_store(tmp_path_factory):
    """Every stage run once through the runner with tiny parameters, two jobs at a time."""
    folder = tmp_path_factory.mktemp("ablation")
    uri = tracking.store_uri(folder / "mlruns")
    jobs = planning.plan("tiny", profiles_path=write_profiles(folder))
    before = sorted(p.name for p in NOTEBOOK_DIR.iterdir())
    run_jobs(jobs, uri=uri, experiment="kang", out_dir=folder / "runs", jobs_in_parallel=2)
    after = sorted(p.name for p in NOTEBOOK_DIR.iterdir())
    assert after == before, "notebooks wrote files into notebooks/"
    return uri, jobs, folder


def test_every_notebook_runs_and_logs_the_named_metrics(ablation_store):
    uri, jobs, folder = ablation_store
    assert [j.status for j in jobs] == ["FINISHED"] * len(jobs), [(j.run_name, j.error) for j in jobs]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("kang")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    by_stage = {}
    for run in runs:
        assert run.info.status == "FINISHED", run.info.run_name
        by_stage.setdefault(run.data.tags.get("stage_name"), []).append(run)
    # the UI draws each stage in its own colour: every run of a stage, parent or result
    colours = {stage: {r.data.tags.get("mlflow.runColor") for r in stage_runs}
               for stage, stage_runs in by_stage.items()}
    assert all(len(c) == 1 and None not in c for c in colours.values()), colours
    assert len({c.pop() for c in colours.values()}) == len(TINY["stages"])
    results = [r for r in runs if r.data.tags.get("level") == "result"]
    # 01, 02: one each; 03: two betas; 04: three variants; 05: two cell types;
    # 06: every prediction lever on one cell type, then one training lever scored under
    # the paper's prediction and under step 1's pick (one run when the pick is "paper");
    # 07: three variants on one cell type
    lever_runs = [r for r in results
                  if r.data.tags.get("variant", "").startswith("latent 20, width 256")]
    assert lever_runs and len(lever_runs) <= 2
    assert {r.data.params["latent_dim"] for r in lever_runs} == {"20"}
    assert len(results) == 1 + 1 + 2 + 3 + 2 + len(PREDICTION_LEVERS) + len(lever_runs) + 3
    for run in results:
        for metric in METRICS:
            assert 0.0 <= run.data.metrics[metric] <= 1.0
            for baseline in ("control", "gene_arith", "pca_arith"):
                assert f"{baseline}_{metric}" in run.data.metrics
        assert run.data.params["held_out_cell_type"] in {"CD4T", "B", "NK"}
        assert "data_sha256" in run.data.tags and "git_commit" in run.data.tags
        history = client.get_metric_history(run.info.run_id, "loss")
        if run.data.tags["stage_name"] not in ("04_balancing", "06_small_data"):  # one shared model
            assert [m.step for m in history] == [1]
    for job in jobs:  # the executed notebook (and its HTML copy) is attached to the runner's run
        artifacts = sorted(a.path for a in client.list_artifacts(job.run_id, "notebook"))
        assert artifacts == [f"notebook/{job.run_name}.html", f"notebook/{job.run_name}.ipynb"]
        run = client.get_run(job.run_id)
        assert run.data.tags["runner_status"] == "FINISHED" and run.data.tags["completed"] == "true"
        if job.config is not None:  # the notebook trained with exactly what --dry-run shows
            left_out = [v for v in run.data.tags.get("varies", "").split(", ") if v]
            if job.stage == "00_data":  # holds nothing out
                left_out += ["held_out_cell_type", "seed"]
                assert "held_out_cell_type" not in run.data.tags
            if not job.trains:  # trains nothing: logs only the data it read (no epochs=100)
                left_out += [k for k in job.config.to_dict() if k not in stages.DATA_FIELDS]
            assert run.data.params == {k: str(v) for k, v in job.config.to_dict().items()
                                       if k not in left_out}
    study_job = next(j for j in jobs if j.stage == "06_small_data")  # every lever drawn, per metric
    plots = {a.path for a in client.list_artifacts(study_job.run_id, "plots")}
    assert plots == {f"plots/{what}_{metric}.png"
                     for metric in ("r2_mean_all", "r2_mean_top100", "r2_var_all")
                     for what in ("prediction_levers", "training_levers", "per_cell_type")}
    compare = by_stage["08_compare"][0]
    assert "ablation_table.csv" in [a.path for a in client.list_artifacts(compare.info.run_id)]


def test_executed_notebooks_show_no_warnings_and_their_figures(ablation_store):
    uri, jobs, folder = ablation_store
    for job in jobs:
        cells = json.loads(job.output.read_text())["cells"]
        streams = [o for c in cells for o in c.get("outputs", []) if o.get("name") == "stderr"]
        warnings = [o for o in streams if "Warning" in "".join(o["text"])]
        assert not warnings, (job.run_name, "".join(warnings[0]["text"])[:500])
        if job.stage in ("01_autoencoder", "03_kl_weighting", "05_scgen", "08_compare"):
            images = [o for c in cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
            assert images, f"{job.run_name} shows no figure"


def test_runner_isolates_a_failing_notebook(tmp_path, capsys):
    profiles = write_profiles(
        tmp_path, stages=["01_autoencoder", "02_vae", "00_data"],
        parameters={**TINY["parameters"], "make_plots": False},  # figures are checked above
        # a failure no plan can foresee: the training diverges inside the notebook (a held-out
        # type not in the data is refused by the runner before any run, tests/test_trust.py)
        stage_parameters={"02_vae": {"overrides": {"learning_rate": 1.0e12}}})
    uri = tracking.store_uri(tmp_path / "mlruns")
    code = runner.main(["--profiles", str(profiles), "--profile", "tiny",
                        "--tracking-uri", uri, "--out", str(tmp_path / "runs")])
    assert code != 0
    client = MlflowClient(uri)
    runs = {r.data.tags["stage_name"]: r for r in client.search_runs(
        [client.get_experiment_by_name("kang").experiment_id], "tags.runner_job_key != ''")}
    assert runs["01_autoencoder"].info.status == "FINISHED"
    assert runs["00_data"].info.status == "FINISHED"  # ran after the failure
    assert runs["02_vae"].info.status == "FAILED"
    failed = runs["02_vae"].info.run_id
    assert sorted(a.path for a in client.list_artifacts(failed, "notebook")) == [
        "notebook/02_vae-CD4T-0.html", "notebook/02_vae-CD4T-0.ipynb"]
    assert "FloatingPointError" in runs["02_vae"].data.tags["error"]
    executed = json.loads((tmp_path / "runs" / "02_vae" / "02_vae-CD4T-0.ipynb").read_text())
    assert "training loss became" in json.dumps(executed)  # the error is in the executed notebook
    out = capsys.readouterr().out
    assert "FAILED" in out and "1 failed" in out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(ablation_store):
    """An MLflow server on loopback over the runner's store: (base URL, store, folder)."""
    uri, jobs, folder = ablation_store
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise
                time.sleep(1)
        yield base, uri, folder
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_mlflow_server_on_loopback_serves_the_runners_runs(mlflow_server):
    base, uri, folder = mlflow_server

    def call(path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{base}/api/2.0/mlflow/{path}", data=data,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.loads(reply.read())

    experiment = call("experiments/get-by-name?experiment_name=kang")["experiment"]
    found = call("runs/search", {"experiment_ids": [experiment["experiment_id"]],
                                 "filter": "tags.level = 'result'", "max_results": 100})
    runs = found["runs"]
    client = MlflowClient(uri)  # the same result runs as the store holds
    in_store = client.search_runs([client.get_experiment_by_name("kang").experiment_id],
                                  "tags.level = 'result'", max_results=1000)
    assert len(runs) == len(in_store) >= 9 + len(PREDICTION_LEVERS) + 1
    assert {r["info"]["run_id"] for r in runs} == {r.info.run_id for r in in_store}
    for run in runs:
        names = {m["key"] for m in run["data"]["metrics"]}
        assert set(METRICS) <= names
        # one naming pattern and the same four tags on every comparable run
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert {"stage", "stage_name", "variant", "held_out_cell_type", "seed"} <= set(tags)
        assert tags["variant"], run["info"]["run_name"]
        assert run["info"]["run_name"] == tracking.result_name(
            tags["stage_name"], tags["variant"], tags["held_out_cell_type"], tags["seed"])
    # every top-level run of a scored stage carries the summary under the same names,
    # and says what it covers; a parent that sweeps a field does not claim one value of it
    top = call("runs/search", {"experiment_ids": [experiment["experiment_id"]],
                               "filter": "tags.runner_job_key != ''", "max_results": 100})
    for run in top["runs"]:
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        params = {p["key"] for p in run["data"].get("params", [])}
        if tags["stage_name"] in ("00_data", "08_compare"):
            continue
        names = {m["key"] for m in run["data"]["metrics"]}
        assert set(METRICS) <= names, tags["stage_name"]
        assert tags["covers"], tags["stage_name"]
        if tags["stage_name"] in ("03_kl_weighting", "04_balancing", "07_beyond"):
            # a stage's row is its own pick, said in the row (the covers column), not a mean
            # over unlike variants
            pick = stages.load_stage(tags["stage_name"])["pick"]
            assert tags["covers"].startswith(f"the stage's pick, {pick}"), tags["covers"]
        varies = list(filter(None, tags.get("varies", "").split(", ")))
        for field in varies:
            assert field not in params and field not in tags, (tags["stage_name"], field)
        if tags["stage_name"] in ("05_scgen", "06_small_data"):  # they loop over held-out types
            assert "held_out_cell_type" in varies
    # the experiment opens in MLflow's model-training view, not the GenAI one
    kind = {t["key"]: t["value"] for t in experiment.get("tags", [])}
    assert kind.get("mlflow.experimentKind") == "custom_model_development"
    # the shared view: R² columns, run names given room (the UI sizes only ordered columns),
    # and a charts filter that keeps exactly the four R² of everything the runs logged
    view = json.loads(kind[tracking.VIEW_TAG])
    assert view["selectedColumns"][:len(METRICS)] == [f"metrics.`{m}`" for m in METRICS]
    assert set(view["columnWidths"]) <= set(view["columnOrder"]) and view["columnWidths"]
    logged = {m["key"] for run in top["runs"] for m in run["data"].get("metrics", [])}
    charted = {m for m in logged if re.search(view["chartsSearchFilter"], m, re.IGNORECASE)}
    assert charted == set(METRICS), charted


@pytest.mark.skipif(not any(__import__("shutil").which(b) for b in ("chromium", "chromium-browser")),
                    reason="no headless Chromium installed (apt-get install chromium): the runs "
                           "page was checked through the REST API only")
def test_the_runs_page_renders_in_a_browser(mlflow_server):
    """The runs page renders in a real browser (headless Chromium), metric columns included
    (MLflow orders them by name, so the field's metrics come before R²: a wide window)."""
    import shutil

    base, uri, folder = mlflow_server
    experiment_id = MlflowClient(uri).get_experiment_by_name("kang").experiment_id
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    shot = folder / "runs_page.png"
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=3200,1000",
         "--virtual-time-budget=20000", f"--screenshot={shot}", "--dump-dom",
         f"{base}/#/experiments/{experiment_id}/runs?viewStateShareKey=r2"],
        capture_output=True, text=True, timeout=600)  # a hang guard: slow beside other tests
    assert shot.exists() and shot.stat().st_size > 10_000, done.stderr[-2000:]
    for metric in METRICS:  # the shared view's columns
        assert f">{metric}<" in done.stdout, f"the runs page shows no {metric} column"


def test_figures_are_legible_at_the_size_they_are_shown(ablation_store):
    """Every logged figure: at most 1,800 px wide, not a sliver (aspect at most 4:1)."""
    from PIL import Image

    uri, jobs, folder = ablation_store
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("kang")
    checked = 0
    for run in client.search_runs([experiment.experiment_id], max_results=1000):
        for artifact in client.list_artifacts(run.info.run_id, "plots"):
            path = client.download_artifacts(run.info.run_id, artifact.path, str(folder / "dl"))
            width, height = Image.open(path).size
            assert width <= 1800 and max(width, height) / min(width, height) <= 4, \
                (artifact.path, width, height)
            checked += 1
    assert checked >= 20
