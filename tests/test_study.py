"""The small-data study's selection rule."""
import numpy as np
import pandas as pd
import pytest

from scgen_ablation import study


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

    def spy(table):
        given.append(set(table["cell_type"]))
        return real(table)

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
    assert list(parameters) == ["scores", "held_out_cell_type"]
    with pytest.raises(ValueError, match="no scores left"):
        study.select_lever(fake_scores()[lambda t: t.cell_type == "A"], held_out_cell_type="A")
