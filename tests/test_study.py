"""The small-data study: the selection rule, its record and its report."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scgen_ablation import study
from scgen_ablation.reports import small_data

ROOT = Path(__file__).resolve().parents[1]


def fake_scores(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for cell_type in ["A", "B", "C", "D"]:
        for s in range(3):
            for k, lever in enumerate(["paper", "x", "y"]):
                base = {"paper": 0.80, "x": 0.85, "y": 0.82}[lever]
                rows.append({"cell_type": cell_type, "seed": s, "lever": lever,
                             **{m: base + rng.normal(0, 0.005) for m in study.RANKED_METRICS}})
    return pd.DataFrame(rows)


def test_rule_picks_the_best_average_rank():
    scores = fake_scores()
    assert study.select_lever(scores) == "x"
    assert list(study.average_ranks(scores).index) == ["x", "y", "paper"]


def test_selection_never_reads_the_held_out_types_scores(monkeypatch):
    scores = fake_scores()
    given = []
    real = study.average_ranks

    def spy(table, *metrics):
        given.append(set(table["cell_type"]))
        return real(table, *metrics)

    monkeypatch.setattr(study, "average_ranks", spy)
    chosen = study.select_lever(scores, held_out_cell_type="B")
    assert given == [{"A", "C", "D"}]
    # poisoning B's own scores cannot change what is chosen for B
    poisoned = scores.copy()
    poisoned.loc[(poisoned.cell_type == "B") & (poisoned.lever == "paper"), list(study.RANKED_METRICS)] = 1.0
    assert study.select_lever(poisoned, held_out_cell_type="B") == chosen
    table = study.leave_one_type_out(poisoned)
    assert table.set_index("cell_type").loc["B", "selected"] == "x"


def test_selection_reads_scores_not_cells():
    import inspect

    parameters = inspect.signature(study.select_lever).parameters
    assert list(parameters) == ["scores", "held_out_cell_type", "metrics"]  # no cells
    with pytest.raises(ValueError, match="no scores left"):
        study.select_lever(fake_scores()[lambda t: t.cell_type == "A"], held_out_cell_type="A")


def fake_training(prediction_scores, lever, gain, seeds=(0,), cell_types=None):
    """Rows of a training lever: the chosen prediction's scores plus ``gain``."""
    base = prediction_scores[(prediction_scores.lever == "x") & prediction_scores.seed.isin(seeds)]
    if cell_types is not None:
        base = base[base.cell_type.isin(cell_types)]
    rows = base.assign(lever=lever, prediction="x")
    rows[list(study.RANKED_METRICS)] += gain
    return rows


def test_step_two_ranks_training_levers_on_the_same_runs_and_can_pick_none(monkeypatch):
    monkeypatch.setitem(study.PREDICTION_LEVERS, "x", {"delta_cell_types": "paired"})
    monkeypatch.setitem(study.TRAINING_LEVERS, "helps", {"dropout": 0.5})
    monkeypatch.setitem(study.TRAINING_LEVERS, "hurts", {"dropout": 0.1})
    scores = fake_scores()
    training = pd.concat([
        fake_training(scores, "helps", 0.02, seeds=(0, 1, 2)),
        fake_training(scores, "hurts", -0.02),
        fake_training(scores, "one type only", 0.5, cell_types=["A"]),  # incomplete: no candidate
        fake_training(scores, "helps", 0.9).assign(prediction="paper"),  # other prediction: ignored
    ])
    candidates = study.training_candidates(scores, training, "x")
    assert set(candidates.lever) == {study.NO_TRAINING_LEVER, "helps", "hurts"}
    assert set(candidates.seed) == {0}  # "hurts" has seed 0 only: the screen
    complete = pd.concat([training, fake_training(scores, "hurts", -0.02, seeds=(1, 2))])
    candidates = study.training_candidates(scores, complete, "x")
    assert set(candidates.lever) == {study.NO_TRAINING_LEVER, "helps", "hurts"}
    assert set(candidates.seed) == {0, 1, 2}  # every lever has every seed: all of them
    assert len(candidates) == 3 * len(scores[scores.lever == "x"])
    pick = study.recommend(scores, training)
    assert pick.label == "helps + x"
    assert pick.changes == {"dropout": 0.5, "delta_cell_types": "paired"}
    assert len(pick.rows) == 4 * 3 and set(pick.rows.seed) == {0, 1, 2}  # every seed
    assert study.recommend(scores, training[training.lever == "hurts"]).label == "x"
    assert study.recommend(scores).changes == {"delta_cell_types": "paired"}


def test_complete_seeds_and_lever_table():
    scores = fake_scores()
    partial = scores[~((scores.seed == 2) & (scores.cell_type == "D"))]
    assert set(study.complete_seeds(partial, ["A", "B", "C", "D"]).seed) == {0, 1}
    for name in ("gene_arith", "pca_arith"):
        scores[f"{name}_r2_mean_all"] = 0.7
    wide = small_data.lever_table(scores, "r2_mean_all")
    assert list(wide.cell_type) == ["A", "B", "C", "D", "mean"]
    assert wide.loc[wide.cell_type == "mean", "x"].item() == pytest.approx(
        scores.loc[scores.lever == "x", "r2_mean_all"].mean())
    assert (wide["gene-space arithmetic"] == 0.7).all() and "x_sd" in wide


def test_an_unknown_training_lever_is_named():
    with pytest.raises(KeyError, match="no such lever"):
        study.evaluate_training_lever(None, None, "no such lever")


RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def test_the_kang_picks_preset_is_what_the_rule_picks_from_the_committed_study():
    from scgen_ablation.config import PRESETS

    scores = pd.read_csv(RESULTS / "small_data_prediction.csv")
    scores = scores[scores["lever"].isin(study.PREDICTION_LEVERS)]
    scores = study.complete_seeds(scores, sorted(scores["cell_type"].unique()))
    assert scores["cell_type"].nunique() == 7 and scores["seed"].nunique() >= 2
    pick = study.recommend(scores, pd.read_csv(RESULTS / "small_data_training.csv"))
    assert pick.changes == picked_part(PRESETS["kang_picks"])


def picked_part(changes: dict) -> dict:
    """A preset less its training schedule (the stopping benchmark's pick)."""
    from scgen_ablation.config import KANG_SCHEDULE

    return {k: v for k, v in changes.items() if k not in KANG_SCHEDULE}


def test_the_recommended_preset_keeps_the_kang_picks_that_passed_on_every_dataset():
    """docs/datasets.md: a Kang pick is kept only where its committed verdict passes on
    every dataset judged, and the preset holds nothing else."""
    from scgen_ablation.config import KANG_SCHEDULE, KANG_STEP_1, PRESETS

    verdicts = pd.read_csv(RESULTS / "dataset_verdicts.csv")
    judged = {"step 1 (prediction)": KANG_STEP_1,  # each rule: the preset changes it judges
              "steps 2 + 3 (ReLU, schedule)": {"output_activation": "relu", **KANG_SCHEDULE}}
    assert set(verdicts["rule"]) >= set(judged) and verdicts["dataset"].nunique() >= 2
    kept = {}
    for rule, changes in judged.items():
        if (verdicts.loc[verdicts["rule"] == rule, "passed"] == "yes").all():
            kept.update(changes)
    assert PRESETS["recommended"] == kept
    assert kept.items() <= PRESETS["kang_picks"].items()


def test_a_tie_goes_to_the_status_quo():
    scores = fake_scores()
    scores = scores[scores.lever != "y"]
    swapped = scores.copy()
    # "x" wins on two types, "paper" on the other two: equal average ranks
    flip = swapped.cell_type.isin(["C", "D"])
    swapped.loc[flip & (swapped.lever == "x"), list(study.RANKED_METRICS)] = 0.70
    ranks = study.average_ranks(swapped)
    assert ranks["x"] == ranks["paper"]
    assert study.select_lever(swapped) == "paper"  # listed first in the table
    assert study.select_lever(swapped.iloc[::-1]) == "x"


# --- the record and the report (need the Kang data; the report and trainings are slow) ---

@pytest.mark.kang
@pytest.mark.slow
def test_small_data_report_is_drawn_from_the_committed_study(tmp_path):
    from scgen_ablation.config import PRESETS

    docs = {name: (ROOT / name).read_text() for name in ("docs/small_data.md", "README.md")}
    copies = []
    for name, text in docs.items():
        copies.append(tmp_path / name.replace("/", "_"))
        copies[-1].write_text(text)
    done = subprocess.run([sys.executable, "-m", "scgen_ablation.study_record", "--report",
                           "--figures", str(tmp_path), "--doc", *map(str, copies)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    # the docs' generated tables are the report's: regenerate them after a run
    for (name, text), copy in zip(docs.items(), copies):
        assert copy.read_text() == text, f"{name} is stale: run python -m scgen_ablation.study_record --report --doc"
    assert docs["docs/small_data.md"].count("<!-- report: ") == 16
    assert docs["README.md"].count("<!-- report: ") - docs["README.md"].count(
        "<!-- report: ablation-") == 2  # the study's two; the ablation record's are its own
    assert "Step 1 picks: paired delta + residual decoding" in done.stdout
    picked = done.stdout.split("## Kang picks = ")[1].split("\n")[0]
    for key, value in picked_part(PRESETS["kang_picks"]).items():  # what the report picks
        assert f"'{key}': {value!r}" in picked
    assert "## The goal, per held-out type" in done.stdout
    drawn = sorted(p.name for p in tmp_path.glob("small_data_*.png"))
    assert len(drawn) == 9, drawn  # prediction levers, training levers, per type: 3 metrics each


def test_write_blocks_fills_named_blocks_and_refuses_unknown_ones(tmp_path):
    from scgen_ablation.reports.common import write_blocks

    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- report: a -->\nstale\ntable\n<!-- /report -->\nprose\n"
                   "<!-- report: b -->\n<!-- /report -->\n")
    write_blocks(doc, {"a": "| new |", "b": "B", "unused": "x"})
    assert doc.read_text() == ("intro\n<!-- report: a -->\n| new |\n<!-- /report -->\nprose\n"
                               "<!-- report: b -->\nB\n<!-- /report -->\n")
    doc.write_text("<!-- report: typo -->\n<!-- /report -->\n")
    with pytest.raises(KeyError, match="typo"):
        write_blocks(doc, {"a": "x"})
    assert doc.read_text() == "<!-- report: typo -->\n<!-- /report -->\n"  # nothing half-written


@pytest.mark.kang
@pytest.mark.slow
def test_parallel_jobs_append_each_run_once(tmp_path):
    """Two trainings at once into a fresh CSV; a second call finds them there and adds none."""
    import pandas as pd

    target = tmp_path / "training.csv"
    command = [sys.executable, "-m", "scgen_ablation.study_record", "--levers", "training",
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
    imported = subprocess.run([*command[:5], "--import-csv", str(target), "--no-mlflow", "--out",
                               str(other)], capture_output=True, text=True, timeout=900)
    assert imported.returncode == 0 and "2 new rows" in imported.stdout, imported.stderr[-2000:]
    merged = pd.read_csv(other)
    assert len(merged) == 4 and sorted(merged["cell_type"]) == ["B", "B", "NK", "NK"]


def test_stage_07s_pick_is_its_winner_only_where_the_winner_passed_on_every_dataset():
    """docs/datasets.md: stage 07's winner is kept as the stage's pick only if its committed
    verdict passes on every dataset judged; otherwise the pick is the status quo."""
    from scgen_ablation.stages import load_stage

    verdicts = pd.read_csv(RESULTS / "dataset_verdicts.csv")
    rule = verdicts[verdicts["rule"] == "stage 07's winner"]
    assert rule["dataset"].nunique() >= 2
    passed = (rule["passed"] == "yes").all()
    assert load_stage("07_beyond")["pick"] == ("per-cell transport" if passed else "scGen delta")
