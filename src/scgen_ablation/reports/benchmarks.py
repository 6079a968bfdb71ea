"""docs/benchmarks.md: the denormal flush, the same seed trained before and after it."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..record import versioned
from .ablation import STUDY_RESULTS, same_runs_difference
from .common import markdown, scored


# the kang_picks preset's rows made before its schedule changed (batch 32, 100 epochs)
KANG_PICKS_ON_PAPER_SCHEDULE = "kang_picks (paper schedule)"


def flush_block(table: pd.DataFrame, study_csv: Path | None = None) -> str:
    """The `kang_picks` preset on the paper's schedule, trained on the CPU with denormals
    flushed (the record's rows of ``table``'s dataset, every version) against the same
    seed trained before the flush (the study's record), per type, next to the study's sd
    over seeds; only rows of the study's prediction version are compared."""
    study_csv = study_csv or STUDY_RESULTS / "small_data_training.csv"
    rows = scored(table)
    study = versioned(pd.read_csv(study_csv)) if study_csv.exists() else None
    now = rows[(rows["stage"] == "05_scgen") & (rows["variant"] == KANG_PICKS_ON_PAPER_SCHEDULE)
               & (rows["device"] == "cpu")]
    if study is None or now.empty:
        return "(no CPU `kang_picks` rows in the record yet)"
    study = study[(study["lever"] == "ReLU output")
                  & (study["prediction"] == "paired delta + residual decoding")]
    now = now[now["prediction_version"].isin(set(study["prediction_version"]))]
    if now.empty:  # rows of two versions are never compared
        return "(no CPU `kang_picks` rows on the study's prediction version in the record)"
    out, runs = same_runs_difference(now, study, "flushed vs not", "study", 4)
    return markdown(out) + (f"\n\nSame seed, same CPU code path, {runs} held-out types; "
                            "only the flush (and the thread count) differ; prediction version "
                            f"{now['prediction_version'].iloc[0]}, the study's.")


def blocks(table: pd.DataFrame, everything: pd.DataFrame) -> dict[str, str]:
    dataset = table["dataset"].iloc[0]  # every version of its rows: the study's is older
    return {"ablation-flush": flush_block(everything[everything["dataset"] == dataset])}
