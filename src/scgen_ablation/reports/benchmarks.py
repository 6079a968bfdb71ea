"""docs/benchmarks.md: the denormal flush, the same seed trained before and after it."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .ablation import STUDY_RESULTS, same_runs_difference
from .common import markdown, scored


# the kang_picks preset's rows made before its schedule changed (batch 32, 100 epochs)
KANG_PICKS_ON_PAPER_SCHEDULE = "kang_picks (paper schedule)"


def flush_block(table: pd.DataFrame, study_csv: Path | None = None) -> str:
    """The `kang_picks` preset on the paper's schedule, trained on the CPU with denormals
    flushed (the record) against the same seed trained before the flush (the study's
    record), per type, next to the study's sd over seeds."""
    study_csv = study_csv or STUDY_RESULTS / "small_data_training.csv"
    rows = scored(table)
    now = rows[(rows["stage"] == "05_scgen") & (rows["variant"] == KANG_PICKS_ON_PAPER_SCHEDULE)
               & (rows["device"] == "cpu")]
    if now.empty or not study_csv.exists():
        return "(no CPU `kang_picks` rows in the record yet)"
    study = pd.read_csv(study_csv)
    study = study[(study["lever"] == "ReLU output")
                  & (study["prediction"] == "paired delta + residual decoding")]
    out, runs = same_runs_difference(now, study, "flushed vs not", "study", 4)
    return markdown(out) + (f"\n\nSame seed, same CPU code path, {runs} held-out types; "
                            "only the flush (and the thread count) differ.")


def blocks(table: pd.DataFrame, everything: pd.DataFrame) -> dict[str, str]:
    return {"ablation-flush": flush_block(table)}
