"""Where things live: the project folders every other module refers to.

The offline data sit beside the repository in ``../shared/data``; runs,
MLflow's store and downloaded data inside it (all git-ignored).
"""
from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
REFERENCE_RESULTS = SHARED_DATA.parent / "reference" / "results.csv"
CACHE_DIR = PROJECT_ROOT / "data"            # downloads of public datasets
ABLATION_DIR = PROJECT_ROOT / "ablation"     # stage files and profiles
NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
RUN_DIR = PROJECT_ROOT / "runs"              # executed notebooks
MLRUNS_DIR = PROJECT_ROOT / "mlruns"         # the MLflow store
