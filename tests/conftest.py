"""Shared fixtures: the real Kang data from ../shared/data and small configs."""
import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers (pytest -n): one torch/BLAS thread each, for them and the
    # runners and notebooks they start. Two workers' spinning thread pools on two cores
    # starve each other (one test took 211 s this way, 21 s alone). Set before torch loads.
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(variable, "1")

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")

import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

# Every test process, and every process it starts (runners, notebooks, record workers),
# keeps to a temporary MLflow store and training store, set here before anything runs:
# a test that forgets a fixture still never writes into the project's mlruns/.
_SESSION_STORES = Path(tempfile.mkdtemp(prefix="scgen-tests-"))
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_SESSION_STORES / 'mlruns' / 'mlflow.db'}"
os.environ["SCGEN_TRAINING_STORE"] = str(_SESSION_STORES / "trainings")
(_SESSION_STORES / "mlruns").mkdir()

import scgen_ablation as sa  # noqa: E402
from scgen_ablation.paths import MLRUNS_DIR, SHARED_DATA  # noqa: E402

KANG = SHARED_DATA / "kang_pbmc_scgen.h5ad"


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


MLRUNS_BEFORE = snapshot(MLRUNS_DIR)  # compared when the whole suite has ended


def pytest_sessionfinish(session, exitstatus):
    """The suite fails if it wrote into the project's mlruns/. Checked once every test has
    ended: by the main process, after all of `make test`'s workers (a test file run last
    could not tell, with another worker still running)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    after = snapshot(MLRUNS_DIR)
    changed = sorted(k for k in after.keys() | MLRUNS_BEFORE.keys()
                     if after.get(k) != MLRUNS_BEFORE.get(k))
    if changed:
        print(f"\nFAILED: the tests wrote into {MLRUNS_DIR}: {changed[:10]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(config, items):
    if not KANG.exists():
        skip = pytest.mark.skip(reason=f"real data not found at {KANG}")
        for item in items:
            if "kang" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def kang():
    """The scGen-preprocessed Kang split (1,975 cells x 6,998 genes)."""
    return sa.load("kang")


@pytest.fixture
def tiny_config():
    """scGen's architecture at a size that trains in seconds."""
    return sa.ScGenConfig(hidden_sizes=(64, 64), latent_dim=10, epochs=3, n_bootstrap=5)


@pytest.fixture
def tracking_store(tmp_path, monkeypatch):
    """A temporary MLflow store; MLFLOW_TRACKING_URI points at it."""
    from scgen_ablation import tracking

    uri = tracking.store_uri(tmp_path / "mlruns")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(autouse=True)
def training_store(tmp_path_factory, monkeypatch):
    """Every test gets its own training store (never the project's mlruns/trainings)."""
    from scgen_ablation import store

    root = tmp_path_factory.mktemp("trainings")
    monkeypatch.setenv(store.ENVIRONMENT_VARIABLE, str(root))
    return store.TrainingStore(root)
