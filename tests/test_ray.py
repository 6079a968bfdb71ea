"""The Ray executor (``runner --executor ray``): same results, same guarantees.

Each runner here starts its own local Ray instance (this machine's CPUs) and an
MLflow server over the test's SQLite store, and runs the real stage-01
notebook on a small simulated dataset, as tests/test_faults.py does for the
local executor.
"""
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from scgen_ablation import tracking
from test_faults import (all_runs, assert_gone, assert_store_is_truthful, dataset,  # noqa: F401
                         kill_tree, papermill_alive, wait_for_epochs)

pytestmark = pytest.mark.slow
# timings and where a run happened differ between executors; nothing else may
NOT_COMPARED = re.compile(r"seconds|time")


@pytest.fixture
def ray_installed():
    pytest.importorskip("ray")


def command(dataset: Path, store: Path, out: Path, *extra: str, executor: str = "ray") -> list[str]:
    tracking.setup(tracking.store_uri(store), "simulated")  # so that polling it creates nothing
    return [sys.executable, "-m", "scgen_ablation.runner", "--stages", "01_autoencoder",
            "--executor", executor, "--tracking-uri", tracking.store_uri(store), "--out", str(out),
            "-p", "dataset", str(dataset), "-p", "held_out_cell_type", "type0",
            "-p", "n_degs", "20", "-p", "make_plots", "false", *extra]


def environment(tmp_path: Path, name: str) -> dict:
    """Each runner its own training store: a model trained by one is never loaded by the other."""
    return {**os.environ, "SCGEN_TRAINING_STORE": str(tmp_path / f"trainings-{name}")}


def server_of(output: str) -> str:
    found = re.search(r"MLflow server (http://127\.0\.0\.1:\d+)", output)
    assert found, output[-3000:]
    return found.group(1)


def assert_server_gone(uri: str) -> None:
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{uri}/health", timeout=2)


def metrics_by_run(store: Path) -> dict:
    _, runs = all_runs(store)
    return {r.info.run_name: {k: v for k, v in r.data.metrics.items() if not NOT_COMPARED.search(k)}
            for r in runs}


def test_ray_and_local_executors_give_the_same_metrics(ray_installed, dataset, tmp_path):
    results = {}
    for executor in ("local", "ray"):
        store, out = tmp_path / executor / "mlruns", tmp_path / executor / "runs"
        done = subprocess.run(command(dataset, store, out, "-p", "epochs", "2", executor=executor),
                              capture_output=True, text=True, timeout=600,
                              env=environment(tmp_path, executor))
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        results[executor] = (store, out, done.stdout)
    local, ray = (metrics_by_run(results[e][0]) for e in ("local", "ray"))
    result = tracking.result_name("01_autoencoder", "paper", "type0", 0)  # "01 paper · type0 · 0"
    assert set(local) == set(ray) == {"01_autoencoder-type0-0", result}
    assert "r2_mean_all" in ray[result]
    assert local == ray  # the same seed on CPU: every metric, bit for bit

    store, out, output = results["ray"]
    uri = server_of(output)
    assert_server_gone(uri)  # stopped with the runner
    # the notebook logged through the server, and its files sit in the store's artifacts/
    executed = nbformat.read(out / "01_autoencoder" / "01_autoencoder-type0-0.ipynb", 4)
    injected = next(c.source for c in executed.cells
                    if "injected-parameters" in c.metadata.get("tags", []))
    assert f'mlflow_tracking_uri = "{uri}"' in injected
    client, runs = all_runs(store)
    for run in runs:
        assert run.info.artifact_uri.startswith((store / "artifacts").as_uri())
        assert client.list_artifacts(run.info.run_id)
    assert_store_is_truthful(store)


def test_a_killed_ray_worker_leaves_its_run_failed_and_a_rerun_finishes_it(ray_installed, dataset,
                                                                           tmp_path):
    store, out = tmp_path / "mlruns", tmp_path / "runs"
    both = command(dataset, store, out, "-p", "epochs", "2", "-p", "seed", "[0, 1]")
    runner = subprocess.Popen(both, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=environment(tmp_path, "ray"), start_new_session=True)
    try:
        deadline, victims = time.time() + 300, []
        while not victims:  # the first papermill seen: kill the Ray worker that runs it
            assert time.time() < deadline and runner.poll() is None, "no job got going"
            victims = papermill_alive(out)
            time.sleep(0.2)
        papermill = victims[0]
        worker = int(Path(f"/proc/{papermill}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert "ray::" in Path(f"/proc/{worker}/cmdline").read_text(errors="replace")
        os.kill(worker, signal.SIGKILL)
        assert_gone([papermill])  # the job's process dies with its worker
        output, _ = runner.communicate(timeout=600)
    finally:
        kill_tree(runner, out)
    assert runner.returncode == 1, output[-3000:]  # one job failed, the other finished
    client, runs = all_runs(store)
    jobs = {r.data.tags["seed"]: r for r in runs if r.data.tags.get("runner_job_key")}
    assert sorted(r.info.status for r in jobs.values()) == ["FAILED", "FINISHED"], output[-3000:]
    failed = next(r for r in jobs.values() if r.info.status == "FAILED")
    assert failed.data.tags["runner_status"] == "FAILED"
    assert "Ray task failed" in failed.data.tags["error"], failed.data.tags["error"]
    assert_store_is_truthful(store)
    assert_server_gone(server_of(output))

    # the rerun skips the finished job and runs the failed one again
    again = subprocess.run(both, capture_output=True, text=True, timeout=600,
                           env=environment(tmp_path, "ray"))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("[runner] skip") == 1, again.stdout[-3000:]
    client, runs = all_runs(store)
    finished = {r.data.tags["seed"] for r in runs
                if r.data.tags.get("runner_status") == "FINISHED" and "runner_job_key" in r.data.tags}
    assert finished == {"0", "1"}
    assert client.get_run(failed.info.run_id).info.status == "FAILED"  # the old run stays
    assert_store_is_truthful(store)


def test_sigterm_to_a_ray_runner_cancels_its_task_and_closes_the_run_killed(ray_installed, dataset,
                                                                           tmp_path):
    store, out = tmp_path / "mlruns", tmp_path / "runs"
    long = command(dataset, store, out, "-p", "epochs", "100000",
                   "-p", "early_stopping_patience", "null")
    runner = subprocess.Popen(long, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=environment(tmp_path, "ray"), start_new_session=True)
    try:
        wait_for_epochs(store, 3, runner)
        children = papermill_alive(out)
        assert len(children) >= 2  # papermill and its kernel
        runner.send_signal(signal.SIGTERM)
        output, _ = runner.communicate(timeout=120)
    finally:
        kill_tree(runner, out)
    assert runner.returncode == 130, output[-3000:]
    assert_gone(children)
    assert_server_gone(server_of(output))
    client, runs = all_runs(store)
    job = [r for r in runs if r.data.tags.get("runner_job_key")]
    assert [(r.info.status, r.data.tags["runner_status"]) for r in job] == [("KILLED", "KILLED")]
    assert [a.path for a in client.list_artifacts(job[0].info.run_id, "logs")]
    assert_store_is_truthful(store)


def test_an_unreachable_ray_address_is_a_clear_error(ray_installed, dataset, tmp_path):
    started = time.time()
    done = subprocess.run(command(dataset, tmp_path / "mlruns", tmp_path / "runs",
                                  "--address", "127.0.0.1:1"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "--address '127.0.0.1:1'" in done.stderr
    assert time.time() - started < 120
    _, runs = all_runs(tmp_path / "mlruns")
    assert not runs  # nothing was made


def test_more_gpus_per_job_than_the_cluster_has_is_refused(ray_installed, dataset, tmp_path):
    done = subprocess.run(command(dataset, tmp_path / "mlruns", tmp_path / "runs",
                                  "--gpus-per-job", "1000"), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "--gpus-per-job" in done.stderr and "no job could ever start" in done.stderr
    _, runs = all_runs(tmp_path / "mlruns")
    assert not runs


def test_the_ray_executor_without_ray_says_how_to_install_it(dataset, tmp_path):
    hide_ray = ("import sys; sys.modules['ray'] = None; "  # import ray now raises ImportError
                "from scgen_ablation.runner import main; sys.exit(main(sys.argv[1:]))")
    arguments = command(dataset, tmp_path / "mlruns", tmp_path / "runs")[3:]
    done = subprocess.run([sys.executable, "-c", hide_ray, *arguments], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "make setup-ray" in done.stderr
    _, runs = all_runs(tmp_path / "mlruns")
    assert not runs
