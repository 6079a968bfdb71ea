"""Where the runner's commands run: child processes that never outlive it (``local``), or
Ray tasks (``ray``, after ``make setup-ray``) behind the same interface, and the MLflow
server that Ray's jobs log through.  :func:`run_pool` runs items on either.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import tracking
from .paths import RUN_DIR
from .planning import UsageError


class Stop(BaseException):
    """The runner was asked to stop (SIGTERM or SIGHUP); handled like Ctrl-C."""


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: killed when the runner dies


class Processes:
    """Child processes that never outlive the runner.

    Each runs in its own session (so it can be stopped as a group) and is
    killed by the kernel if the runner dies, even by SIGKILL; a Jupyter kernel
    started by papermill exits when its papermill does.  :meth:`stop` ends
    them all and keeps new ones from starting.
    """

    def __init__(self):
        self.stopping = threading.Event()
        self._live: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def run(self, command: list[str], log: Path, **kwargs) -> int | None:
        """Run ``command`` with output to ``log``; its exit code, or None if stopping."""
        if self.stopping.is_set():
            return None
        with open(log, "w") as log_file:
            process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True,
                                       preexec_fn=_die_with_parent, **kwargs)
            with self._lock:
                self._live.add(process)
            try:
                return process.wait()
            finally:
                with self._lock:
                    self._live.discard(process)

    def stop(self, grace: float = 10.0) -> None:
        """Terminate every live process group (then kill what is left after ``grace`` s)."""
        self.stopping.set()
        with self._lock:
            live = list(self._live)
        for process in live:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.time() + grace
        for process in live:
            try:
                process.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)


def run_pool(items: list, work, parallel: int, processes: Processes) -> list:
    """``work(item)`` for every item, ``parallel`` at a time, in threads; their results.

    The one executor of the project: the runner's notebook jobs and the
    small-data study's trainings both go through it.  On Ctrl-C, SIGTERM or
    SIGHUP no new item starts, the live processes are stopped, every started
    ``work`` is left to close its records, and the interruption is re-raised.
    """
    previous = {}
    if threading.current_thread() is threading.main_thread():
        def stop(signum, frame):
            raise Stop(signal.Signals(signum).name)
        previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    pool, futures = ThreadPoolExecutor(max_workers=max(1, parallel)), []
    try:
        futures = [pool.submit(work, item) for item in items]
        while not all(f.done() for f in futures):
            time.sleep(0.2)
    except BaseException:
        if previous:  # a second signal must not cut the cleanup short
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(s, signal.SIG_IGN)
        processes.stop()  # sets ``stopping`` first: an item that starts now runs nothing
        for future in futures:
            future.cancel()
        pool.shutdown(wait=True)
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    pool.shutdown(wait=True)
    return [future.result() for future in futures]  # a bug in ``work`` does not pass silently


# --- the Ray executor: the same interface as Processes, the jobs run as Ray tasks ---------

EXECUTORS = ("local", "ray")
# what Ray sets on a worker for the devices it gave the task: the job gets the worker's
# values, never the runner's
DEVICE_VARIABLES = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")


def _ray_task():
    """The function a Ray task runs: ``command`` as a child of the worker, output to ``log``.

    Built in here so that Ray ships it by value: a worker runs it with the standard
    library only, without importing this package (and torch) first.  The child runs
    in its own session and is killed by the kernel when the worker dies (killed,
    force-cancelled, its node lost); a plain ``ray.cancel`` arrives as
    KeyboardInterrupt and stops the child's process group (SIGTERM, then SIGKILL).
    """
    def run(command: list[str], log: str, kwargs: dict, threads: int, device_variables,
            grace: float = 10.0) -> int:
        import ctypes
        import os
        import signal
        import subprocess
        import sys
        import time

        def die_with_worker():
            if sys.platform.startswith("linux"):
                ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

        env = dict(kwargs.pop("env", None) or os.environ)
        for name in device_variables:  # the devices Ray gave this task
            env.pop(name, None)
            if name in os.environ:
                env[name] = os.environ[name]
        env.setdefault("OMP_NUM_THREADS", str(threads))  # as many threads as CPUs reserved
        with open(log, "w") as log_file:
            process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True,
                                       preexec_fn=die_with_worker, env=env, **kwargs)
            try:
                while True:  # a timed wait, so that a cancel (KeyboardInterrupt) gets through
                    try:
                        return process.wait(timeout=0.5)
                    except subprocess.TimeoutExpired:
                        pass
            except BaseException:
                for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                    try:
                        os.killpg(process.pid, sig)
                    except ProcessLookupError:
                        break
                    deadline = time.time() + wait
                    while process.poll() is None and time.time() < deadline:
                        time.sleep(0.1)
                    if process.poll() is not None:
                        break
                raise
    return run


def import_ray():
    """Ray, or a UsageError that says how to install it."""
    try:
        import ray
    except ImportError as error:
        raise UsageError(f"--executor ray needs Ray, which is not installed ({error}); install "
                         "it with `make setup-ray` (pip install -e '.[ray]' with the torch "
                         "constraint)") from None
    return ray


def _check_address(address: str) -> None:
    """A HOST:PORT address (bare or ray://) must at least accept a connection: a GCS
    address that does not answer would otherwise keep ``ray.init`` waiting for minutes."""
    import socket

    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address {address!r} is not 'auto', HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as error:
        raise UsageError(f"--address {address!r}: no Ray cluster answers there ({error}); "
                         "start one (ray start --head) or check the address") from None


class RayProcesses:
    """:class:`Processes` on a Ray cluster: each command runs as a Ray task.

    ``run`` submits a task that reserves ``cpus`` CPUs and ``gpus`` GPUs (a
    fraction lets several small trainings share one GPU), runs the command on
    the worker as a child process with output to ``log``, and returns its exit
    code; -1 when the task itself failed (its worker or node died), the reason
    appended to the log; None if stopping.  Tasks are never retried by Ray: a
    job whose worker died is closed FAILED and runs again on the next runner.
    ``stop`` cancels the live tasks (KeyboardInterrupt in the task, which stops
    its command; after ``grace`` s the workers are killed) and starts no new one.

    ``address``: None starts a private local Ray instance (all of this
    machine's CPUs and GPUs) that ends with :meth:`shutdown`; ``'auto'`` joins
    the cluster that ``ray start`` runs on this machine; ``ray://HOST:PORT``
    connects through Ray Client.
    """

    def __init__(self, address: str | None = None, cpus: float = 1, gpus: float = 0):
        import logging

        if not cpus > 0 or not gpus >= 0:
            raise UsageError(f"--cpus-per-job must be > 0 and --gpus-per-job >= 0, got {cpus} "
                             f"and {gpus}")
        ray = self.ray = import_ray()
        self.cpus, self.gpus, self.address = cpus, gpus, address
        self.stopping = threading.Event()
        self._live: set = set()
        self._lock = threading.Lock()
        self.owns_ray = False
        if not ray.is_initialized():
            options = dict(logging_level=logging.WARNING, log_to_driver=False)
            if address is None:  # our own instance, only as big as this machine
                options.update(address="local", include_dashboard=False)
            else:
                _check_address(address)
                options.update(address=address)
            try:
                ray.init(**options)
            except Exception as error:
                where = f"--address {address!r}" if address else "a local Ray instance"
                raise UsageError(f"{where}: could not start or connect to Ray "
                                 f"({type(error).__name__}: {error})") from None
            self.owns_ray = True
        resources = ray.cluster_resources()
        for name, wanted, flag in (("CPU", cpus, "--cpus-per-job"), ("GPU", gpus, "--gpus-per-job")):
            if wanted and resources.get(name, 0) < wanted:
                self.shutdown()
                raise UsageError(f"{flag} {wanted:g}: the Ray cluster has {resources.get(name, 0):g} "
                                 f"{name}(s) in all; no job could ever start")
        self._task = ray.remote(max_retries=0)(_ray_task())

    def capacity(self) -> int:
        """How many jobs the cluster runs at once with these resources per job."""
        resources = self.ray.cluster_resources()
        n = int(resources.get("CPU", 0) // self.cpus)
        if self.gpus:
            n = min(n, int(resources.get("GPU", 0) // self.gpus))
        return max(1, n)

    def on_this_host(self) -> bool:
        """Whether every node of the cluster is this machine (and we are not a Ray Client)."""
        ray = self.ray
        if ray.util.client.ray.is_connected():
            return False
        here = ray.util.get_node_ip_address()
        return all(node["NodeManagerAddress"] == here for node in ray.nodes() if node["Alive"])

    def run(self, command: list[str], log: Path, **kwargs) -> int | None:
        """Run ``command`` as a Ray task with output to ``log``; its exit code, -1 if the task
        failed, None if stopping."""
        ray = self.ray
        if self.stopping.is_set():
            return None
        threads = max(1, int(self.cpus))
        ref = self._task.options(num_cpus=self.cpus, num_gpus=self.gpus).remote(
            [str(part) for part in command], str(log), kwargs, threads, DEVICE_VARIABLES)
        with self._lock:
            self._live.add(ref)
        try:
            while not ray.wait([ref], timeout=1.0)[0]:
                pass
            return ray.get(ref)
        except ray.exceptions.RayError as error:
            if self.stopping.is_set():
                return None
            with contextlib.suppress(OSError), open(log, "a") as log_file:
                reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
                print(f"\n[runner] the Ray task failed: {type(error).__name__}: {reason}",
                      file=log_file)
            return -1
        finally:
            with self._lock:
                self._live.discard(ref)

    def stop(self, grace: float = 10.0) -> None:
        """Cancel every live task (the command is stopped); force after ``grace`` s."""
        self.stopping.set()
        with self._lock:
            live = list(self._live)
        if not live:
            return
        for ref in live:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=False)
        _, left = self.ray.wait(live, num_returns=len(live), timeout=grace + 5)
        for ref in left:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)

    def shutdown(self) -> None:
        """End the Ray instance we started, or leave the cluster we joined (a Ray that was
        already initialised in this process is left alone)."""
        if self.owns_ray and self.ray.is_initialized():
            self.ray.shutdown()


def check_executor(executor: str = "local", address: str | None = None, cpus: float = 1,
                   gpus: float = 0) -> None:
    """Every check of the executor's options that can be made without starting it (the dry
    run makes them too): a UsageError for an unknown executor, options of the other
    executor, Ray missing, resources out of range or an address that does not answer."""
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor {executor!r}; executors: {list(EXECUTORS)}")
    if executor == "local":
        if address is not None or cpus != 1 or gpus != 0:
            raise UsageError("--address, --cpus-per-job and --gpus-per-job are for "
                             "--executor ray")
        return
    if not cpus > 0 or not gpus >= 0:
        raise UsageError(f"--cpus-per-job must be > 0 and --gpus-per-job >= 0, got {cpus:g} "
                         f"and {gpus:g}")
    import_ray()
    if address is not None:
        _check_address(address)


def make_processes(executor: str = "local", address: str | None = None, cpus: float = 1,
                   gpus: float = 0) -> Processes | RayProcesses:
    """The processes of an executor: ``local`` (the default, child processes of this one) or
    ``ray`` (Ray tasks, see :class:`RayProcesses`); both go to :func:`run_pool` alike.
    Raises :class:`UsageError` for an unknown executor, Ray missing or unreachable."""
    check_executor(executor, address, cpus, gpus)
    return Processes() if executor == "local" else RayProcesses(address, cpus, gpus)


# the tracking server's guard: ends the server's whole process group when the runner is
# gone, even killed outright (the server forks workers that PR_SET_PDEATHSIG would miss)
_SERVER_GUARD = """
import os, signal, subprocess, sys, time
runner, server = int(sys.argv[1]), subprocess.Popen(sys.argv[2:])
while server.poll() is None:
    if os.getppid() != runner:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.killpg(0, signal.SIGTERM)
        time.sleep(10)
        os.killpg(0, signal.SIGKILL)
    time.sleep(0.5)
sys.exit(server.returncode)
"""


class TrackingServer:
    """An MLflow server on 127.0.0.1 over a local store, so that jobs on Ray workers log
    through it instead of writing the SQLite file themselves.

    Backend: the store's database; artifacts: the store's ``artifacts/`` folder,
    both as the default root of new experiments and as the destination of
    proxied uploads, so a run's files land where the local executor puts them.
    Its log goes to ``log``.  It ends with :meth:`stop`, and with the runner
    even when the runner is killed (a guard process watches it).
    """

    def __init__(self, store_uri: str, log: Path):
        import socket

        if not store_uri.startswith("sqlite:///"):
            raise UsageError(f"the Ray executor serves a local SQLite store through an MLflow "
                             f"server; {store_uri!r} is not one: pass --tracking-uri http://…")
        database = Path(store_uri[len("sqlite:///"):])
        artifacts = (database.parent / "artifacts").resolve()
        artifacts.mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe:  # a free port (taken again at once by the server)
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.uri, self.log = f"http://127.0.0.1:{port}", Path(log)
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store_uri,
                   "--default-artifact-root", artifacts.as_uri(), "--serve-artifacts",
                   "--artifacts-destination", artifacts.as_uri(), "--host", "127.0.0.1",
                   "--port", str(port), "--workers", "1"]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "w") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _SERVER_GUARD, str(os.getpid()), *command], env=env,
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)

    def wait_until_ready(self, timeout: float = 180.0) -> str:
        """Block until the server answers on /health; its URI."""
        deadline = time.time() + timeout
        while True:
            try:
                tracking.check_reachable(self.uri, timeout=2)
                return self.uri
            except ConnectionError:
                if self.process.poll() is not None or time.time() > deadline:
                    tail = self.log.read_text(errors="replace")[-2000:]
                    self.stop()
                    raise RuntimeError(f"the MLflow server for the Ray jobs did not start "
                                       f"(log {self.log}):\n{tail}") from None
                time.sleep(0.5)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the server's process group, SIGKILL after ``grace`` s."""
        group = self.process.pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break
            deadline = time.time() + grace
            while time.time() < deadline:
                self.process.poll()  # reap the guard
                try:
                    os.killpg(group, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
        self.process.poll()


@contextlib.contextmanager
def open_executor(executor: str = "local", uri: str | None = None, address: str | None = None,
                  cpus: float = 1, gpus: float = 0, server_log: Path | None = None):
    """``(processes, uri for the jobs)``, closed on exit (also on error or signal).

    Local: :class:`Processes`, and the jobs log to ``uri`` itself.  Ray: Ray
    tasks (:class:`RayProcesses`), and over a local SQLite store an MLflow
    server (:class:`TrackingServer`) whose http URI the jobs get; an http
    ``uri`` is passed on as it is.  A cluster beyond this machine cannot reach
    a server on 127.0.0.1: there a SQLite store is refused (pass an http URI).
    """
    uri = tracking.tracking_uri(uri)
    with contextlib.ExitStack() as stack:
        serve = executor == "ray" and not uri.startswith(("http://", "https://"))
        server = None
        if serve:  # started first: it comes up while Ray does
            import_ray()
            server = TrackingServer(uri, server_log or RUN_DIR / "mlflow-server.log")
            stack.callback(server.stop)
        processes = make_processes(executor, address, cpus, gpus)
        if isinstance(processes, RayProcesses):
            stack.callback(processes.shutdown)
            if server is not None and not processes.on_this_host():
                raise UsageError("the Ray cluster reaches beyond this machine, where the MLflow "
                                 "server on 127.0.0.1 cannot be reached: start a tracking server "
                                 "the workers reach and pass --tracking-uri http://HOST:PORT")
        job_uri = server.wait_until_ready() if server is not None else uri
        if server is not None:
            print(f"[runner] Ray jobs log through the MLflow server {job_uri} (store {uri}; "
                  f"its log: {server.log})", flush=True)
        yield processes, job_uri
