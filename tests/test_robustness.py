"""Bad input, faults and concurrency: every row of docs/robustness.md has a test here."""
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

import scgen_ablation as sa
from scgen_ablation import data, planning, runner, tracking
from scgen_ablation.jobs import run_jobs
from scgen_ablation.metrics import top_degs

pytestmark = pytest.mark.kang
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def small(kang):
    """Real Kang cells, 300 genes: fast to validate and to train on."""
    return kang[:, :300].copy()


def config(**changes):
    return sa.ScGenConfig(hidden_sizes=(32, 32), latent_dim=8, epochs=2, n_degs=20,
                          n_bootstrap=0).replace(**changes)


# --- validation at the boundary -------------------------------------------------

def test_missing_condition_key_lists_the_columns(small):
    with pytest.raises(KeyError, match=r"'stim' not found; available columns: \['condition'"):
        sa.split_held_out(small, config(condition_key="stim"))


def test_missing_cell_type_key_lists_the_columns(small):
    with pytest.raises(KeyError, match="'celltype' not found; available columns"):
        sa.split_held_out(small, config(cell_type_key="celltype"))


def test_absent_control_label_lists_the_labels(small):
    with pytest.raises(ValueError, match=r"control label 'ctrl' not found.*\['control', 'stimulated'\]"):
        sa.split_held_out(small, config(control_label="ctrl"))


def test_absent_stimulated_label_lists_the_labels(small):
    with pytest.raises(ValueError, match=r"stimulated label 'IFNB' not found.*\['control', 'stimulated'\]"):
        sa.split_held_out(small, config(stimulated_label="IFNB"))


def test_absent_held_out_type_lists_the_types(small):
    with pytest.raises(ValueError, match=r"'Platelet' not in obs\['cell_type'\]; cell types present: \['B'"):
        sa.split_held_out(small, config(held_out_cell_type="Platelet"))


def test_held_out_type_only_in_the_held_out_condition(small):
    only_stim = small[~((small.obs.cell_type == "NK") & (small.obs.condition == "control"))].copy()
    with pytest.raises(ValueError, match="'NK' has no 'control' cells"):
        sa.split_held_out(only_stim, config(held_out_cell_type="NK"))


def test_held_out_type_without_stimulated_cells(small):
    only_ctrl = small[~((small.obs.cell_type == "NK") & (small.obs.condition == "stimulated"))].copy()
    with pytest.raises(ValueError, match="'NK' has no 'stimulated' cells to score"):
        sa.split_held_out(only_ctrl, config(held_out_cell_type="NK"))


def test_empty_anndata(small):
    with pytest.raises(ValueError, match=r"AnnData is empty \(0 cells"):
        sa.split_held_out(small[:0].copy(), config())


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_x(small, bad):
    broken = small.copy()
    broken.X = broken.X.toarray()
    broken.X[3, 5] = bad
    with pytest.raises(ValueError, match="1 NaN or Inf values"):
        sa.split_held_out(broken, config())


def test_negative_values(small):
    broken = small.copy()
    broken.X = broken.X.toarray() - 1.0
    with pytest.raises(ValueError, match="negative values"):
        sa.split_held_out(broken, config())


def test_raw_counts_are_detected_at_load_and_at_training():
    with pytest.raises(ValueError, match="holds raw counts.*preprocess_counts=True"):
        sa.load("kang_100genes")
    import anndata as ad

    counts = ad.read_h5ad(data.resolve_path("kang_100genes"))
    with pytest.raises(ValueError, match="raw counts.*log-normalised"):
        sa.train(counts, config(cell_type_key="cell_type"))
    processed = sa.load("kang_100genes", preprocess_counts=True, n_top_genes=100)
    assert data.looks_log_normalised(processed.X)


def test_genes_at_prediction_must_match_the_model(small):
    cfg = config(held_out_cell_type="NK")
    split = sa.split_held_out(small, cfg)
    model = sa.train(split.train, cfg, progress=False)
    reordered = split.ctrl_target[:, list(reversed(split.ctrl_target.var_names))].copy()
    with pytest.raises(ValueError, match="genes differ from the trained model's"):
        sa.predict(model, split.train, reordered)
    with pytest.raises(ValueError, match=r"299 given, 300 trained"):
        sa.predict(model, split.train, split.ctrl_target[:, 1:].copy())


def test_fewer_genes_than_the_deg_count(small):
    cfg = config(n_degs=500)
    split = sa.split_held_out(small, cfg)
    with pytest.raises(ValueError, match="top 500 DEGs of 300 genes"):
        top_degs(split, cfg)


def test_duplicated_obs_names(small):
    broken = small.copy()
    broken.obs_names = ["same"] * broken.n_obs
    with pytest.raises(ValueError, match="obs names are not unique.*obs_names_make_unique"):
        sa.split_held_out(broken, config())


def test_cell_type_with_a_single_cell_still_balances(small):
    keep = ~((small.obs.cell_type == "Dendritic") & (small.obs.condition == "stimulated"))
    keep[np.flatnonzero((small.obs.cell_type == "Dendritic") & (small.obs.condition == "stimulated"))[0]] = True
    one_cell = small[keep].copy()
    assert ((one_cell.obs.cell_type == "Dendritic") & (one_cell.obs.condition == "stimulated")).sum() == 1
    result = sa.run(one_cell, config(held_out_cell_type="NK"), progress=False)
    assert np.isfinite(result.metrics["r2_mean_all"])


def test_unknown_override_names_the_key():
    from scgen_ablation.stages import stage_config

    with pytest.raises(KeyError, match="unknown config key.*'no_such_key'"):
        stage_config("01_autoencoder", overrides={"no_such_key": 1})


# --- faults -------------------------------------------------------------------------

def test_killed_training_leaves_a_readable_checkpoint(tmp_path):
    checkpoint = tmp_path / "model.pt"
    script = textwrap.dedent(f"""
        import scgen_ablation as sa
        adata = sa.load("kang")[:, :500].copy()
        config = sa.ScGenConfig(epochs=10_000, checkpoint_every=1, early_stopping_patience=10_000)
        sa.train(adata, config, checkpoint_path={str(checkpoint)!r}, progress=False)
    """)
    process = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 300
        while not checkpoint.exists():
            assert process.poll() is None, "training died before its first checkpoint"
            assert time.time() < deadline
            time.sleep(0.2)
        time.sleep(1.5)  # let it get into the middle of writing later checkpoints
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    model = sa.TrainedModel.load(checkpoint)
    assert len(model.history) >= 1 and model.genes[:3] == list(sa.load("kang").var_names[:3])


def test_checkpoint_shape_mismatch_is_a_clear_error(small, tmp_path):
    model = sa.train(small, config(), progress=False)
    path = model.save(tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"]["latent_dim"] = 16
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="does not match the architecture"):
        sa.TrainedModel.load(tmp_path / "bad.pt")


def test_checkpoints_load_with_weights_only(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"state_dict": {}, "config": {}, "genes": [], "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="refused by the safe loader"):
        sa.TrainedModel.load(tmp_path / "evil.pt")


def test_rerun_skips_finished_jobs_unless_forced(tmp_path):
    uri = tracking.store_uri(tmp_path / "mlruns")
    no_plots = {"make_plots": False}  # the job's identity is what is checked, not its figures

    def run(extra=no_plots, force=False):
        jobs = planning.plan("quick", stages=["00_data"], extra_parameters=extra)
        run_jobs(jobs, uri=uri, out_dir=tmp_path / "runs", force=force)
        return jobs[0]

    first = run()
    assert first.status == "FINISHED"
    again = run()
    assert again.status == "SKIPPED" and again.run_id == first.run_id
    changed = run({**no_plots, "n_top_genes": 1000})
    assert changed.status == "FINISHED" and changed.run_id != first.run_id
    forced = run(force=True)
    assert forced.status == "FINISHED" and forced.run_id != first.run_id


CONCURRENT_WRITER = """
import sys
import mlflow
from scgen_ablation import tracking
worker = int(sys.argv[1])
for r in range(5):
    tracking.start(experiment="concurrent", run_name=f"w{worker}-r{r}", tags={"worker": worker})
    for epoch in range(1, 21):
        tracking.epoch_logger()(epoch, {"loss": float(epoch), "kl": 0.5})
    tracking.log_metrics({"r2_mean_all": 0.5 + worker / 100})
    tracking.finish()
"""


def test_four_processes_log_to_one_store_without_loss(tmp_path):
    uri = tracking.store_uri(tmp_path / "mlruns")
    tracking.setup(uri, "concurrent")  # as the runner does: create the store once first
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    workers = [subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER, str(w)], env=env,
                                stderr=subprocess.PIPE, text=True) for w in range(4)]
    for process in workers:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-2000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("concurrent").experiment_id],
                              max_results=1000)
    assert len(runs) == 4 * 5
    for run in runs:
        assert run.info.status == "FINISHED"
        assert len(client.get_metric_history(run.info.run_id, "loss")) == 20
        assert run.data.metrics["r2_mean_all"] == pytest.approx(0.5 + int(run.data.tags["worker"]) / 100)


def test_servers_bind_to_loopback():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("mlflow ui", "jupyter lab"):
        line = next(l for l in makefile.splitlines() if target in l)
        block = makefile[makefile.index(line):].split("\n\n")[0]
        assert "127.0.0.1" in block, target


# --- config values are checked when the config is made ---------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("hidden_sizes", "256", "'hidden_sizes' must be a list"),
    ("hidden_sizes", [800, 0], "hidden_sizes must be one or more sizes >= 1"),
    ("early_stopping_patience", 0, "early_stopping_patience must be >= 1"),
    ("early_stopping_patience", -5, "early_stopping_patience must be >= 1"),
    ("kl_weight", float("nan"), "kl_weight must be a finite number"),
    ("learning_rate", 0.0, "learning_rate must be a finite number > 0"),
    ("learning_rate", "fast", "'learning_rate' must be a number"),
    ("epochs", 2.5, "'epochs' must be a whole number"),
    ("epochs", True, "'epochs' must be a number"),
    ("dropout", 1.0, r"dropout must be in \[0, 1\)"),
    ("early_stopping_min_delta", -0.01, r"early_stopping_min_delta must be in \[0, 1\)"),
    ("learning_rate_schedule", "linear", "learning_rate_schedule='linear' is not one of"),
    ("seed", -1, "seed must be >= 0"),
    ("n_bootstrap", -1, "n_bootstrap must be >= 0"),
    ("variational", "yes", "'variational' must be true or false"),
    ("device", "gpu", "device='gpu' is not"),
    ("held_out_cell_type", "", "held_out_cell_type must be a non-empty string"),
    ("stimulated_label", "control", "both 'control'"),
])
def test_config_values_are_checked_naming_the_field(field, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        sa.preset("paper", **{field: value})


def test_numbers_given_as_strings_are_read_as_numbers():
    config = sa.preset("paper", learning_rate="1e-4", epochs="20", hidden_sizes=["64", 32])
    assert (config.learning_rate, config.epochs, config.hidden_sizes) == (1e-4, 20, (64, 32))


def test_patience_none_turns_early_stopping_off(small, monkeypatch):
    from scgen_ablation import training
    worse = iter(range(100, 1000))  # a validation loss that only ever gets worse
    monkeypatch.setattr(training, "evaluate_loss", lambda module, X: {
        "loss": float(next(worse)), "reconstruction": 0.0, "kl": 0.0})
    assert len(sa.train(small, config(epochs=5, early_stopping_patience=1), progress=False).history) == 2
    off = config(epochs=5, early_stopping_patience=None)
    assert len(sa.train(small, off, progress=False).history) == 5


# --- data are checked at every door --------------------------------------------------------

def unlogged(adata):
    """Normalised to counts per million but never log-transformed (values up to ~1e5)."""
    out = adata.copy()
    out.X = np.expm1(out.X.toarray()) * 100.0
    return out


def test_unlogged_normalised_data_is_refused_at_split_train_and_predict(small):
    cfg = config(held_out_cell_type="NK")
    with pytest.raises(ValueError, match="normalised but not log-transformed.*log1p"):
        sa.split_held_out(unlogged(small), cfg)
    with pytest.raises(ValueError, match="normalised but not log-transformed"):
        sa.train(unlogged(small), cfg, progress=False)
    split = sa.split_held_out(small, cfg)
    model = sa.train(split.train, cfg, progress=False)
    with pytest.raises(ValueError, match="control cells to predict from.*not log-transformed"):
        sa.predict(model, split.train, unlogged(split.ctrl_target))


@pytest.mark.parametrize("problem, message", [
    ("nan", "NaN or Inf"), ("negative", "negative values"), ("counts", "raw counts")])
def test_predict_checks_its_input_as_strictly_as_train(small, problem, message):
    cfg = config(held_out_cell_type="NK")
    split = sa.split_held_out(small, cfg)
    model = sa.train(split.train, cfg, progress=False)
    bad = split.ctrl_target.copy()
    bad.X = bad.X.toarray()
    if problem == "nan":
        bad.X[0, 0] = np.nan
    elif problem == "negative":
        bad.X -= 1.0
    else:
        bad.X = np.round(np.expm1(bad.X))
    with pytest.raises(ValueError, match=message):
        sa.predict(model, split.train, bad)


@pytest.mark.parametrize("missing", [np.nan, "", None])
def test_cells_without_a_label_are_refused(small, missing):
    broken = small.copy()
    column = broken.obs["cell_type"].astype(object)
    column.iloc[5] = missing
    broken.obs["cell_type"] = column
    with pytest.raises(ValueError, match=r"obs\['cell_type'\] has 1 cells without a label"):
        sa.split_held_out(broken, config())


def test_duplicated_gene_names(small):
    broken = small.copy()
    broken.var_names = ["GENE"] * 2 + list(broken.var_names[2:])
    with pytest.raises(ValueError, match=r"var names are not unique.*\['GENE'\].*var_names_make_unique"):
        sa.split_held_out(broken, config())
    with pytest.raises(ValueError, match="var names are not unique"):
        sa.train(broken, config(), progress=False)


@pytest.mark.parametrize("dtype", [bool, object])
def test_unsupported_dtypes_are_refused(small, dtype):
    broken = small.copy()
    broken.X = (broken.X.toarray() > 0).astype(dtype)
    with pytest.raises(TypeError, match="dtype .*scGen needs numbers"):
        data.check_expression(broken.X)


def test_files_that_are_not_h5ad_name_the_file(tmp_path):
    text = tmp_path / "cells.csv"
    text.write_text("gene,cell\n1,2\n")
    with pytest.raises(ValueError, match=r"cells.csv' is not a readable .h5ad file \(convert it"):
        sa.load(str(text))
    with pytest.raises(IsADirectoryError, match="is a folder"):
        sa.load(str(tmp_path))


def test_checkpoint_path_that_is_a_folder_fails_before_training(small, tmp_path):
    started = time.perf_counter()
    with pytest.raises(IsADirectoryError, match="checkpoint_path .* is a folder"):
        sa.train(small, config(epochs=10_000), checkpoint_path=tmp_path, progress=False)
    assert time.perf_counter() - started < 30  # refused up front, not after 10,000 epochs


def test_truncated_checkpoint_names_its_path(small, tmp_path):
    path = sa.train(small, config(), progress=False).save(tmp_path / "model.pt")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"checkpoint '.*model.pt' cannot be read"):
        sa.TrainedModel.load(path)


def test_unreachable_tracking_server_fails_within_seconds():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    started = time.perf_counter()
    with pytest.raises(ConnectionError, match=f"http://127.0.0.1:{port} is not reachable"):
        tracking.setup(f"http://127.0.0.1:{port}", "kang")
    assert time.perf_counter() - started < 15
    code = runner.main(["--stages", "02_vae", "--tracking-uri", f"http://127.0.0.1:{port}"])
    assert code == 2


def test_a_run_left_open_is_closed_killed_when_the_notebook_starts_again(tracking_store):
    first = tracking.start(experiment="again", run_name="first")
    second = tracking.start(experiment="again", run_name="second")  # no finish() in between
    tracking.finish()
    client = MlflowClient(tracking_store)
    assert client.get_run(first.info.run_id).info.status == "KILLED"
    assert client.get_run(second.info.run_id).info.status == "FINISHED"
    assert client.get_run(second.info.run_id).data.tags["completed"] == "true"


@pytest.mark.kang
def test_the_thread_count_holds_during_training_after_the_deg_ranking():
    """numba's parallel Wilcoxon (in prepare) resets the OpenMP thread count that torch
    reads; config.num_threads is applied again where training starts."""
    import subprocess
    import sys

    code = (
        "import torch, scgen_ablation as sa\n"
        "from scgen_ablation import experiment\n"
        "seen = []\n"
        "config = sa.preset('paper', held_out_cell_type='CD4T', epochs=2, num_threads=1)\n"
        "experiment.run(sa.load('kang'), config, progress=False,\n"
        "               callback=lambda epoch, record: seen.append(torch.get_num_threads()))\n"
        "import numba\n"
        "print(seen, numba.get_num_threads())\n")
    import os

    # the machine's default thread count, not the one-thread setting of `make test`'s workers
    # (under which a reset to the default could not be told from the setting)
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[1, 1] 1"


def test_a_notebook_run_by_hand_builds_the_config_the_runner_hands_it():
    """The runner passes each notebook its config whole; by hand (config None, the same
    parameters through papermill -y) the notebook's parameters cell and stage_config make
    the same config, for every job of both profiles."""
    import json as json_

    from scgen_ablation import stages

    for profile in ("quick", "full"):
        for job in planning.plan(profile):
            if job.config is None:
                continue
            cells = json_.loads(job.notebook.read_text())["cells"]
            source = next("".join(c["source"]) for c in cells
                          if "parameters" in c["metadata"].get("tags", []))
            namespace: dict = {}
            exec(source, namespace)  # the notebook's defaults, as papermill leaves them
            assert namespace["config"] is None, job.notebook.name
            namespace.update(job.parameters)  # what papermill injects (the runner adds config)
            by_hand = stages.stage_config(job.stage, **stages.config_layers(namespace))
            assert by_hand == job.config, (profile, job.run_name)


def test_a_cell_type_name_with_a_slash_keeps_its_notebook_in_the_stage_folder(tmp_path):
    from scgen_ablation import jobs, tracking

    name = tracking.stage_run_name("05_scgen", "T/NK cells", 0)
    path = jobs.output_path(tmp_path, "05_scgen", name)
    assert path.parent == tmp_path / "05_scgen" and path.name == "05_scgen-T_NK cells-0.ipynb"
    for fine in ("05_scgen-CD14+Mono-0", "05_scgen-CD4 Naive T-0", "05_scgen-TA.Early-1"):
        assert jobs.output_path(tmp_path, "05_scgen", fine).name == fine + ".ipynb"
