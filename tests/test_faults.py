"""Fault injection: kill runners, fail notebooks, fill the disk, race two runners.

Every test ends by asserting the store: no FINISHED run without its results,
no RUNNING run left behind, no job run twice, nothing lost.  They run the real
stage-01 notebook through papermill on a small simulated dataset.
"""
import contextlib
import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from scgen_ablation import comparison, planning, tracking
from scgen_ablation.jobs import run_jobs
from synthetic import simulate

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "01_autoencoder.ipynb"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """4 cell types x 2 conditions x 60 cells, 120 genes, log-scale values."""
    adata, _, _ = simulate(n_types=4, cells_per_type=60, n_genes=120, seed=3)
    path = tmp_path_factory.mktemp("data") / "simulated.h5ad"
    adata.write_h5ad(path)
    return path


def runner_command(dataset: Path, store: Path, out: Path, *extra: str) -> list[str]:
    tracking.setup(tracking.store_uri(store), "simulated")  # so that polling it creates nothing
    return [sys.executable, "-m", "scgen_ablation.runner", "--stages", "01_autoencoder",
            "--tracking-uri", tracking.store_uri(store), "--out", str(out),
            "-p", "dataset", str(dataset), "-p", "held_out_cell_type", "type0",
            "-p", "n_degs", "20", "-p", "make_plots", "false", *extra]


def all_runs(store: Path):
    client = MlflowClient(tracking.store_uri(store))
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(experiments, max_results=1000) if experiments else []


def assert_store_is_truthful(store: Path) -> None:
    """No RUNNING run; every FINISHED job run has its notebook and result metrics."""
    client, runs = all_runs(store)
    for run in runs:
        assert run.info.status != "RUNNING", (run.info.run_name, run.data.tags)
        if run.data.tags.get("runner_job_key") and run.info.status == "FINISHED":
            assert run.data.tags.get("runner_status") == "FINISHED"
            assert [a.path for a in client.list_artifacts(run.info.run_id, "notebook")]
            assert "r2_mean_all" in run.data.metrics
    finished = [r.data.tags["runner_job_key"] for r in runs
                if r.data.tags.get("runner_status") == "FINISHED"]
    assert len(finished) == len(set(finished)), "a job was run to the end twice"


def wait_for_epochs(store: Path, n: int, process: subprocess.Popen, timeout: float = 300):
    """Block until some run in the store has logged ``n`` epochs of loss."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, "the runner ended before training got going"
        if (store / "mlflow.db").exists():
            try:
                client, runs = all_runs(store)
                if any(len(client.get_metric_history(r.info.run_id, "loss")) >= n for r in runs):
                    return
            except Exception:  # the store may be mid-creation
                pass
        time.sleep(1)
    raise AssertionError(f"no run reached {n} epochs in {timeout} s")


def papermill_alive(out: Path) -> list[int]:
    """Pids of live papermill processes writing into ``out``, and of their children (kernels)."""
    parents, papermill = {}, []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if state[0] == "Z":  # a zombie has ended
            continue
        parents[int(proc.name)] = int(state[1])
        if "papermill" in command and str(out) in command:
            papermill.append(int(proc.name))
    return papermill + [pid for pid, parent in parents.items() if parent in papermill]


def kill_tree(process: subprocess.Popen, out: Path) -> None:
    """Whatever a failed test left running: the runner, its papermill and kernel."""
    for pid in [process.pid, *papermill_alive(out)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)


def assert_gone(pids: list[int], timeout: float = 15) -> None:
    """Every one of ``pids`` has exited (a kernel notices its papermill is gone within seconds)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()
                 and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
        if not alive:
            return
        time.sleep(0.5)
    raise AssertionError(f"processes outlived their runner: {alive}")


def test_a_notebook_run_by_hand_that_raises_ends_its_run_failed(dataset, tmp_path):
    store = tmp_path / "mlruns"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking.store_uri(store)}
    done = subprocess.run(
        [sys.executable, "-m", "papermill", str(NOTEBOOK), str(tmp_path / "out.ipynb"),
         "-p", "dataset", str(dataset), "-p", "held_out_cell_type", "Platelet", "-k", "python3"],
        env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode != 0 and "Platelet" in done.stderr
    client, runs = all_runs(store)
    assert runs and {r.info.status for r in runs} == {"FAILED"}  # the stage run and its result
    stage_run = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert "Platelet" in stage_run.data.tags["error"]
    # and it went to the dataset's experiment, not to "kang"
    assert client.get_experiment(stage_run.info.experiment_id).name == "simulated"


def test_sigterm_stops_the_notebook_and_closes_its_run_killed(dataset, tmp_path):
    store, out = tmp_path / "mlruns", tmp_path / "runs"
    command = runner_command(dataset, store, out, "-p", "epochs", "100000",
                             "-p", "early_stopping_patience", "null")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        wait_for_epochs(store, 3, process)
        children = papermill_alive(out)
        assert len(children) >= 2  # papermill and its kernel
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=120)
    finally:
        kill_tree(process, out)
    assert process.returncode == 130, output
    assert_gone(children)
    client, runs = all_runs(store)
    job = [r for r in runs if r.data.tags.get("runner_job_key")]
    assert [r.info.status for r in job] == ["KILLED"]
    assert job[0].data.tags["runner_status"] == "KILLED"
    assert [a.path for a in client.list_artifacts(job[0].info.run_id, "logs")]  # papermill's log
    assert_store_is_truthful(store)


def test_sigkill_leaves_nothing_running_and_the_next_runner_closes_and_reruns(dataset, tmp_path):
    store, out = tmp_path / "mlruns", tmp_path / "runs"
    long = runner_command(dataset, store, out, "-p", "epochs", "100000",
                          "-p", "early_stopping_patience", "null")
    process = subprocess.Popen(long, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        wait_for_epochs(store, 3, process)
        children = papermill_alive(out)
        assert len(children) >= 2  # papermill and its kernel
        os.killpg(process.pid, signal.SIGKILL)  # the runner's whole process group, no cleanup
        process.wait(timeout=30)
        assert_gone(children)
    finally:
        kill_tree(process, out)
    client, runs = all_runs(store)
    assert runs and {r.info.status for r in runs} == {"RUNNING"}  # nobody could close them
    left_open = {r.info.run_id for r in runs}  # the job run and its nested result
    # the next runner on the store closes the orphans, then runs its own jobs
    short = runner_command(dataset, store, out, "-p", "epochs", "2")
    done = subprocess.run(short, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"closed {len(left_open)} run(s) left open" in done.stdout
    client, runs = all_runs(store)
    status = {r.info.run_id: r.info.status for r in runs}
    assert {status[run_id] for run_id in left_open} == {"KILLED"}
    assert {s for run_id, s in status.items() if run_id not in left_open} == {"FINISHED"}
    assert_store_is_truthful(store)


def test_failing_cleanup_writes_leave_the_run_failed_and_the_job_to_rerun(dataset, tmp_path,
                                                                          monkeypatch):
    store, out = tmp_path / "mlruns", tmp_path / "runs"
    uri = tracking.store_uri(store)

    def plan():
        return planning.plan("quick", stages=["01_autoencoder"], extra_parameters={
            "dataset": str(dataset), "held_out_cell_type": "type0", "n_degs": 20, "epochs": 2,
            "make_plots": False})

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(MlflowClient, "log_artifact", disk_full)
    jobs = run_jobs(plan(), uri=uri, out_dir=out)
    assert jobs[0].status == "FAILED" and "No space left" in jobs[0].error
    monkeypatch.undo()
    client, runs = all_runs(store)
    job_run = client.get_run(jobs[0].run_id)
    assert job_run.info.status == "FAILED" and job_run.data.tags["runner_status"] == "FAILED"
    # its nested result finished, but a job that failed does not count in the comparison
    table = tracking.runs_table("simulated", uri=uri)
    assert not comparison.counted(table).any()
    again = run_jobs(plan(), uri=uri, out_dir=out)  # not skipped: it never finished
    assert again[0].status == "FINISHED" and again[0].run_id != jobs[0].run_id
    assert_store_is_truthful(store)


def test_two_runners_on_one_store_never_run_one_job_twice(dataset, tmp_path):
    store, out = tmp_path / "mlruns", tmp_path / "runs"
    command = runner_command(dataset, store, out, "-p", "epochs", "3", "-p", "seed", "[0, 1]")
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(2)
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    client, runs = all_runs(store)
    keys = [r.data.tags["runner_job_key"] for r in runs if r.data.tags.get("runner_job_key")]
    assert len(keys) == 2 and len(set(keys)) == 2, outputs  # seeds 0 and 1, once each
    assert_store_is_truthful(store)


def test_changed_data_at_the_same_path_reruns(dataset, tmp_path):
    jobs = planning.with_checksums(planning.plan("quick", stages=["01_autoencoder"], extra_parameters={
        "dataset": str(dataset), "held_out_cell_type": "type0"}))
    moved = tmp_path / "copy.h5ad"
    moved.write_bytes(dataset.read_bytes())
    same = planning.with_checksums(planning.plan("quick", stages=["01_autoencoder"], extra_parameters={
        "dataset": str(moved), "held_out_cell_type": "type0"}))
    assert same[0].data_sha256 == jobs[0].data_sha256
    adata, _, _ = simulate(n_types=4, cells_per_type=60, n_genes=120, seed=4)
    adata.write_h5ad(moved)  # other data, same path
    changed = planning.with_checksums(planning.plan("quick", stages=["01_autoencoder"],
                                                extra_parameters={"dataset": str(moved),
                                                                  "held_out_cell_type": "type0"}))
    assert changed[0].data_sha256 != same[0].data_sha256 and changed[0].key != same[0].key


def test_a_store_that_fills_up_mid_training_leaves_no_finished_run_and_reruns(dataset, tmp_path):
    """RLIMIT_FSIZE caps every file the runner and its notebook write: the store cannot grow."""
    import resource

    store, out = tmp_path / "mlruns", tmp_path / "runs"
    command = runner_command(dataset, store, out, "-p", "epochs", "100000",
                             "-p", "early_stopping_patience", "null")
    limit = (store / "mlflow.db").stat().st_size + 256 * 1024  # room for a few dozen epochs

    def cap():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run(command, capture_output=True, text=True, timeout=600, preexec_fn=cap)
    assert done.returncode != 0
    client, runs = all_runs(store)
    assert runs and all(r.info.status != "FINISHED" for r in runs)
    # room again: the next runner closes what could not be closed, and the job runs
    short = runner_command(dataset, store, out, "-p", "epochs", "2")
    again = subprocess.run(short, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:]
    assert_store_is_truthful(store)
