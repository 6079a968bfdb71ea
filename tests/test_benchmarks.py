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
            if line.startswith(("paper ", "recommended "))]
    assert [row[0] for row in rows] == ["paper", "recommended"]  # both presets, one run
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
