"""Smoke tests: the benchmarks run and print their tables (no timing is asserted)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.kang, pytest.mark.slow]


def test_speed_benchmark_runs_and_reports_the_floor():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--epochs", "2"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    for label in ("s/epoch", "matmuls", "adam", "floor", "ratio", "peak memory"):
        assert label in done.stdout
    rows = [line.split() for line in done.stdout.splitlines()
            if line.startswith(("paper ", "kang_picks "))]
    assert [row[0] for row in rows] == ["paper", "kang_picks"]  # both presets, one run
    for row in rows:  # s/epoch, matmuls, adam, floor: the floor is their sum
        assert abs(float(row[2]) + float(row[3]) - float(row[4])) < 2e-3


@pytest.mark.skipif(not (ROOT / ".venv-reference" / "bin" / "python").exists(),
                    reason="reference environment not installed (make reference-env)")
def test_quick_reference_benchmark_writes_its_table(tmp_path):
    out = tmp_path / "reference_quick.csv"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reference.py"), "--quick",
                           "--out", str(out)], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    import pandas as pd

    table = pd.read_csv(out)
    assert set(table.implementation) == {"ours", "reference", "control", "gene_arith"}


def test_the_stopping_verdict_holds_the_rule_it_states():
    import importlib.util

    import numpy as np
    import pandas as pd

    spec = importlib.util.spec_from_file_location("stopping", ROOT / "benchmarks" / "stopping.py")
    stopping = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stopping)
    rng = np.random.default_rng(0)
    runs = [(t, s) for t in ["B", "CD4T", "NK"] for s in range(3)]
    converged = pd.DataFrame([{"cell_type": t, "seed": s, "epochs_run": 100, "train_seconds": 300.0,
                               **{m: 0.9 + 0.02 * rng.standard_normal() for m in stopping.R2}}
                              for t, s in runs])
    reference = pd.DataFrame([{"cell_type": t, "seed": s, "epochs": 28, "s_per_epoch": 4.0}
                              for t, s in runs])  # 112 s a training
    half_sd = np.sqrt(converged.groupby("cell_type")["r2_var_all"].var().mean()) / 2

    def candidate(shift=0.0, seconds=100.0):
        return converged.assign(epochs_run=35, train_seconds=seconds,
                                r2_var_all=converged["r2_var_all"] + shift)

    assert stopping.verdict(candidate(-0.9 * half_sd), converged, reference)[2]
    per_type, per_metric, passed = stopping.verdict(candidate(-1.1 * half_sd), converged, reference)
    assert not passed and list(per_metric.index[~per_metric["no worse"]]) == ["r2_var_all"]
    slower = candidate().assign(train_seconds=lambda t: np.where(t.cell_type == "NK", 120.0, 100.0))
    per_type, _, passed = stopping.verdict(slower, converged, reference)
    assert not passed and list(per_type.index[~per_type["faster"]]) == ["NK"]
    assert not stopping.verdict(candidate().iloc[1:], converged, reference)[2]  # a run missing


def test_the_kang_picks_schedule_is_a_candidate_whose_committed_verdict_passed():
    # a default may change only on a passed verdict: the committed runs must show it
    import importlib.util

    import pandas as pd

    from scgen_ablation.config import PRESETS, KANG_SCHEDULE
    from scgen_ablation.comparison import reference_runs

    spec = importlib.util.spec_from_file_location("stopping", ROOT / "benchmarks" / "stopping.py")
    stopping = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stopping)
    assert KANG_SCHEDULE.items() <= PRESETS["kang_picks"].items()
    runs = pd.read_csv(stopping.OUT)
    runs = runs[runs["rule"] == stopping.rule_name(KANG_SCHEDULE, "kang_picks")]
    per_type, per_metric, passed = stopping.verdict(
        runs, stopping.converged_runs("kang_picks"), reference_runs())
    assert len(runs) == 21 and passed, (per_type, per_metric)


def test_same_results_tells_equal_stores_from_changed_ones(tmp_path, monkeypatch):
    """benchmarks/same_results.py: the before/after check of a refactor."""
    import importlib.util

    from scgen_ablation import tracking

    spec = importlib.util.spec_from_file_location("same_results",
                                                  ROOT / "benchmarks" / "same_results.py")
    same_results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(same_results)

    def store(name, r2, variant="PCA · per-cell transport"):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.store_uri(tmp_path / name))
        with tracking.result_run("07_beyond", variant, "CD4T", 0, experiment="kang"):
            tracking.log_metrics({"r2_mean_all": r2, "train_seconds": r2 * 100})
        return str(tmp_path / name)

    before, same, changed = store("a", 0.9), store("b", 0.9), store("c", 0.91)
    renamed = store("d", 0.9, "PCA · per-cell transport (kang_picks)")
    assert same_results.main([before, same]) == 0
    assert same_results.main([before, changed]) == 1
    assert same_results.main([before, renamed]) == 1  # an unmatched run
    assert same_results.main([before, renamed, "--rename", "transport=transport (kang_picks)"]) == 0


def test_the_clipping_benchmark_scores_each_prediction_as_returned_and_clipped(tmp_path):
    """benchmarks/clipping.py on simulated data: six predictions per run, each scored twice;
    control (real cells, no negative entry) scores the same both ways, and a rerun adds nothing."""
    import pandas as pd

    from synthetic import simulate

    adata, _, _ = simulate(n_types=4, cells_per_type=60, n_genes=120, seed=3)
    data, out = tmp_path / "simulated.h5ad", tmp_path / "clipping.csv"
    adata.write_h5ad(data)
    command = [sys.executable, str(ROOT / "benchmarks" / "clipping.py"), "--dataset", str(data),
               "--cell-types", "type0", "--epochs", "2", "--train", "--out", str(out)]
    for _ in range(2):
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
    table = pd.read_csv(out)
    assert len(table) == 6 and table["method"].is_unique
    assert table["negative_share"].between(0, 1).all()
    control = table.set_index("method").loc["control as prediction"]
    assert control["negative_share"] == 0
    for metric in ("r2_mean_all", "r2_var_all", "pcc_delta_all", "edistance"):
        assert control[f"{metric}_clipped"] == control[metric], metric
    assert (table["negative_share"] > 0).any()  # the simulated data give some to clip
    report = subprocess.run(command[:2] + ["--report", "--out", str(out)], capture_output=True,
                            text=True, timeout=300)
    assert report.returncode == 0 and "r2_mean_all change" in report.stdout, report.stderr[-2000:]
