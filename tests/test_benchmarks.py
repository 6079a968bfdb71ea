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
    for label in ("s/epoch", "matmul floor", "x the floor", "peak memory"):
        assert label in done.stdout


def test_small_data_report_is_drawn_from_the_committed_study(tmp_path):
    from scgen_ablation.config import PRESETS

    docs = {name: (ROOT / name).read_text() for name in ("docs/small_data.md", "README.md")}
    copies = []
    for name, text in docs.items():
        copies.append(tmp_path / name.replace("/", "_"))
        copies[-1].write_text(text)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "small_data.py"), "--report",
                           "--figures", str(tmp_path), "--doc", *map(str, copies)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    # the docs' generated tables are the report's: regenerate them after a run
    for (name, text), copy in zip(docs.items(), copies):
        assert copy.read_text() == text, f"{name} is stale: run small_data.py --report --doc"
    assert docs["docs/small_data.md"].count("<!-- report: ") == 16
    assert docs["README.md"].count("<!-- report: ") == 2
    assert "Step 1 picks: paired delta + residual decoding" in done.stdout
    picked = done.stdout.split("## Recommended = ")[1].split("\n")[0]
    for key, value in PRESETS["recommended"].items():  # the preset is what the report picks
        assert f"'{key}': {value!r}" in picked
    assert "## The goal, per held-out type" in done.stdout
    drawn = sorted(p.name for p in tmp_path.glob("small_data_*.png"))
    assert len(drawn) == 9, drawn  # prediction levers, training levers, per type: 3 metrics each


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


def test_write_blocks_fills_named_blocks_and_refuses_unknown_ones(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("small_data", ROOT / "benchmarks" / "small_data.py")
    small_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(small_data)
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- report: a -->\nstale\ntable\n<!-- /report -->\nprose\n"
                   "<!-- report: b -->\n<!-- /report -->\n")
    small_data.write_blocks(doc, {"a": "| new |", "b": "B", "unused": "x"})
    assert doc.read_text() == ("intro\n<!-- report: a -->\n| new |\n<!-- /report -->\nprose\n"
                               "<!-- report: b -->\nB\n<!-- /report -->\n")
    doc.write_text("<!-- report: typo -->\n<!-- /report -->\n")
    with pytest.raises(KeyError, match="typo"):
        small_data.write_blocks(doc, {"a": "x"})
    assert doc.read_text() == "<!-- report: typo -->\n<!-- /report -->\n"  # nothing half-written


def test_parallel_jobs_append_each_run_once(tmp_path):
    """Two trainings at once into a fresh CSV; a second call finds them there and adds none."""
    import pandas as pd

    target = tmp_path / "training.csv"
    command = [sys.executable, str(ROOT / "benchmarks" / "small_data.py"), "--levers", "training",
               "--only", "latent 20, width 256", "--seeds", "0", "--epochs", "1", "--jobs", "2",
               "--no-mlflow", "--out", str(target)]
    done = subprocess.run(command + ["--cell-types", "B", "NK"], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    rows = pd.read_csv(target)
    assert sorted(rows["cell_type"].unique()) == ["B", "NK"]
    assert len(rows) == 2 * 2  # each training scored under the paper's prediction and step 1's pick
    assert set(rows["lever"]) == {"latent 20, width 256"} and (rows["epochs_run"] == 1).all()
    again = subprocess.run(command + ["--cell-types", "B"], capture_output=True, text=True,
                           timeout=900)
    assert again.returncode == 0 and "0 new rows" in again.stdout
    assert len(pd.read_csv(target)) == 4
    # rows made elsewhere come in once: what the other CSV lacks, nothing more
    other = tmp_path / "here.csv"
    rows[rows["cell_type"] == "B"].to_csv(other, index=False)
    imported = subprocess.run([*command[:4], "--import-csv", str(target), "--no-mlflow", "--out",
                               str(other)], capture_output=True, text=True, timeout=900)
    assert imported.returncode == 0 and "2 new rows" in imported.stdout, imported.stderr[-2000:]
    merged = pd.read_csv(other)
    assert len(merged) == 4 and sorted(merged["cell_type"]) == ["B", "B", "NK", "NK"]
