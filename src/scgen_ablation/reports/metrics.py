"""docs/metrics.md: stage 06's levers ranked by the R² rule and by the field's rule, and
the `kang_picks` preset on the field's metrics per held-out type."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from ..metrics import BASELINES
from .ablation import LADDER, ladder_figure, methods
from .common import REFERENCE, markdown, scored

RESIDUAL = ("06_small_data", "paired delta + residual decoding")


def rules_block(table: pd.DataFrame) -> str:
    """Stage 06's prediction levers ranked by the study's rule on R² and by the same rule
    on the field's metrics (stated in docs/metrics.md before it was applied)."""
    from ..study import (FIELD_RANKED_METRICS, PREDICTION_LEVERS, RANKED_METRICS, average_ranks,
                         select_lever)

    levers = scored(table)
    levers = levers[(levers["stage"] == "06_small_data") & levers["variant"].isin(PREDICTION_LEVERS)]
    if levers.empty:
        return "(no stage 06 rows in the record)"
    scores = levers.rename(columns={"held_out_cell_type": "cell_type", "variant": "lever"})
    order = {lever: i for i, lever in enumerate(PREDICTION_LEVERS)}  # the status quo first
    scores = scores.sort_values("lever", key=lambda s: s.map(order), kind="stable")
    ranks = pd.DataFrame({"average rank, R² rule": average_ranks(scores, RANKED_METRICS),
                          "average rank, field rule": average_ranks(scores, FIELD_RANKED_METRICS)})
    ranks = ranks.sort_values("average rank, R² rule", kind="stable")
    lines = [markdown(ranks.round(2).rename_axis("prediction lever"))]
    for name, metrics in (("R² rule", RANKED_METRICS), ("field rule", FIELD_RANKED_METRICS)):
        picks = [select_lever(scores, t, metrics) for t in sorted(scores["cell_type"].unique())]
        lines.append(f"- {name}: picks **{select_lever(scores, metrics=metrics)}** on all seven "
                     f"types; left-one-type-out picks: "
                     + ", ".join(f"{p} ×{picks.count(p)}" for p in dict.fromkeys(picks)))
    runs = scores.groupby("lever").size().min()
    return "\n".join([lines[0], "", f"On the record's {runs} runs per lever "
                      f"({scores['cell_type'].nunique()} types × {scores['seed'].nunique()} seeds).",
                      ""] + lines[1:])


def kang_picks_block(table: pd.DataFrame) -> str:
    """The `kang_picks` preset (stage 05 with -p preset_name kang_picks) per held-out type
    under the field's metrics, beside the baselines (mean over the seeds recorded)."""
    rows = scored(table)
    rows = rows[(rows["stage"] == "05_scgen") & (rows["variant"] == "kang_picks")]
    if rows.empty:
        return "(no `kang_picks` rows in the record yet)"
    per_type = rows.groupby("held_out_cell_type").mean(numeric_only=True)
    out = pd.DataFrame({
        "r of change, kang_picks": per_type["pcc_delta_top100"],
        "r of change, best baseline": per_type[[f"{b}_pcc_delta_top100" for b in BASELINES]].max(1),
        "DEGs found, kang_picks": per_type["deg_overlap_top100"],
        "DEGs found, PCA arithmetic": per_type["pca_arith_deg_overlap_top100"],
        "E-distance, kang_picks": per_type["edistance"],
        "E-distance, gene-space arithmetic": per_type["gene_arith_edistance"]})
    seeds = ", ".join(map(str, sorted(rows["seed"].unique())))
    return markdown(out.round(3).rename_axis("held-out type")) + (
        f"\n\nSeeds {seeds}; r of change and DEGs over the top-100 DEGs.")

def field_figure(table: pd.DataFrame) -> plt.Figure:
    """Where the field's metrics change the story: the ladder, residual decoding and the
    baselines on R² of the mean and on the DEGs found and the E-distance."""
    long = methods(table)
    residual = scored(table)
    residual = residual[(residual["stage"] == RESIDUAL[0]) & (residual["variant"] == RESIDUAL[1])]
    extra = residual[residual["run"].isin(set(long["run"]))].assign(
        method="06 paired δ + residual decoding")
    steps = list(LADDER.values())
    long = pd.concat([long[long["method"].isin(steps)], extra, long[~long["method"].isin(steps)]],
                     ignore_index=True)
    long = long[long["method"] != REFERENCE]  # R² only
    return ladder_figure(table, ("r2_mean_all", "deg_overlap_top100", "edistance"), long,
                         "R² of the mean ranks the ladder with the baselines; the DEGs found and "
                         "the E-distance (lower is better) do not")


def blocks(table: pd.DataFrame, everything: pd.DataFrame) -> dict[str, str]:
    return {"ablation-field-rule": rules_block(table), "ablation-kang-picks": kang_picks_block(table)}


def figures(table: pd.DataFrame) -> dict[str, plt.Figure]:
    return {"field_metrics.png": field_figure(table)}
