"""docs/datasets.md (and the README's headline): what each component buys on each
dataset, what each dataset cost, and every rule's verdict per dataset."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..metrics import METRIC_LABELS, METRICS
from ..paths import PROJECT_ROOT
from ..comparison import reference_runs
from .common import GENE_ARITHMETIC, REFERENCE, SHORT, latest, markdown, scored


VERDICTS = PROJECT_ROOT / "benchmarks" / "results" / "dataset_verdicts.csv"  # docs/datasets.md


# what each component adds, in the order it is added, on every dataset of the record
COMPONENTS = {
    ("01_autoencoder", "paper"): "01 plain autoencoder",
    ("02_vae", "paper"): "02 VAE, β = 1",
    ("03_kl_weighting", "kl_weight=5e-05"): "03 β = 5e-5",
    ("05_scgen", "paper"): "05 + balanced δ (scGen)",
    ("06_small_data", "paired delta + residual decoding"): "06 step 1: paired δ, residual",
    ("05_scgen", "recommended"): "05 recommended preset (step 1)",
    ("05_scgen", "kang_picks"): "05 kang_picks: + ReLU, 40 epochs",
    ("07_beyond", "PCA · per-cell transport"): "07 PCA · per-cell transport (no model)",
}


DATASET_METRICS = ("r2_mean_all", "r2_mean_top100", "r2_var_all", "pcc_delta_all",
                   "deg_overlap_top100", "edistance")


# docs/datasets.md's rules, stated before the runs: (rule, candidate, baseline, picked from k
# candidates on PICKED_ON); on the dataset a choice was picked on, its margin is the Kang
# verdicts' own (k = 1), on every other the margin is divided by k
PICKED_ON = "kang"


DATASET_RULES = (
    ("step 1 (prediction)", ("06_small_data", "paired delta + residual decoding"),
     ("06_small_data", "paper"), 7),
    ("steps 2 + 3 (ReLU, schedule)", ("05_scgen", "kang_picks"),
     ("06_small_data", "paired delta + residual decoding"), 13),
    ("stage 07's winner", ("07_beyond", "per-cell transport"), ("07_beyond", "scGen delta"), 8),
)


RULE_METRICS = METRICS  # the four R², as every verdict of this repository


def components(everything: pd.DataFrame) -> pd.DataFrame:
    """Long table: one row per (dataset, component, run), gene-space arithmetic included
    (read from the scGen rows' ``gene_arith_`` columns)."""
    table = latest(scored(everything))
    parts = [table[(table["stage"] == stage) & (table["variant"] == variant)].assign(method=label)
             for (stage, variant), label in COMPONENTS.items()]
    scgen = table[(table["stage"] == "05_scgen") & (table["variant"] == "paper")]
    columns = {f"gene_arith_{m}": m for m in DATASET_METRICS if f"gene_arith_{m}" in scgen}
    parts.append(scgen[["dataset", "run", "held_out_cell_type", "seed", *columns]]
                 .rename(columns=columns).assign(method=GENE_ARITHMETIC))
    for dataset in sorted(everything["dataset"].unique()):  # R² only, where it was run
        reference = reference_runs(dataset)
        if reference is not None and len(reference):
            shown = [m for m in DATASET_METRICS if m in reference]
            parts.append(reference[["cell_type", "seed", *shown]]
                         .rename(columns={"cell_type": "held_out_cell_type"})
                         .assign(dataset=dataset, method=REFERENCE))
    return pd.concat(parts, ignore_index=True)


def datasets_block(everything: pd.DataFrame, metric: str) -> str:
    """One metric, each component (rows) on each dataset (columns): mean ± sd over runs."""
    long = components(everything)
    order = [*COMPONENTS.values(), REFERENCE, GENE_ARITHMETIC]
    grouped = long.groupby(["method", "dataset"])[metric]
    sd = grouped.std().round(3).astype(str)
    cells = (grouped.mean().round(3).astype(str) + (" ± " + sd).where(grouped.size() > 1, "")
             + " (" + grouped.size().astype(str) + ")").where(grouped.count() > 0).unstack()
    cells = cells.reindex([m for m in order if m in cells.index]).fillna("—")
    cells = cells.rename(columns=versions_of(everything))
    return markdown(cells.rename_axis(SHORT.get(metric, metric))) + (
        f"\n\n{METRIC_LABELS[metric]}: mean ± sd (runs) over held-out types × seeds on each "
        "dataset; —: not in the record yet (the authors' scGen: R² only, "
        "`benchmarks/reference.py`). v1, v2, …: the prediction version the dataset's rows "
        "were scored on, its latest in the record (v1: negative entries kept; from v2: "
        "clipped at 0, what the package returns; a row that a later version did not change "
        "is carried forward to it; prediction.PREDICTION_CHANGES, docs/beyond.md).")


def versions_of(everything: pd.DataFrame) -> dict[str, str]:
    """Each dataset's name with the prediction version its shown rows were scored on."""
    return {dataset: f"{dataset} (v{version})" for dataset, version
            in everything.groupby("dataset")["prediction_version"].max().items()}


def cost_block(everything: pd.DataFrame) -> str:
    """What each dataset's rows cost, per prediction version and device: unique trainings
    and their summed training time, and the rows of that version in the record."""
    by = ["dataset", "prediction_version"]
    trained = everything.dropna(subset=["train_seconds"]).drop_duplicates("training_key")
    table = trained.groupby([*by, "device"]).agg(
        trainings=("training_key", "size"), hours=("train_seconds", lambda s: s.sum() / 3600),
        seconds_each=("train_seconds", "median")).reset_index()
    rows = everything.groupby(by).size().rename("rows in the record").reset_index()
    table = table.merge(rows, on=by, how="outer").rename(columns={"prediction_version": "version"})
    table = table.sort_values(["dataset", "version", "device"], ascending=[True, False, True])
    return table.round({"hours": 1, "seconds_each": 0}).to_markdown(index=False) + (
        "\n\nTrainings: unique training keys with a recorded time (rows the study imported "
        "carry none); hours: their training time summed (wall time is less where several "
        "ran at once); seconds_each: the median; rows in the record: of that prediction "
        "version (every device). A dataset's tables show its latest version only (version 1: "
        "negative entries kept, before issue #30; `ablation_record --dry-run` counts its "
        "rows as stale).")


def rule_verdicts(everything: pd.DataFrame) -> pd.DataFrame:
    """docs/datasets.md's verdicts: per dataset, rule and R², the mean paired difference
    (candidate − baseline, same type and seed), the margin (½ the baseline's seed sd pooled
    over types, divided on a new dataset by the number of candidates the choice was picked
    from) and
    whether it passes; only datasets where both rows exist, per prediction version."""
    table = latest(scored(everything))
    rows = []
    for (dataset, version), data in table.groupby(["dataset", "prediction_version"], sort=True):
        for rule, candidate, baseline, picked_from in DATASET_RULES:
            pair = [data[(data["stage"] == s) & (data["variant"] == v)]
                    .set_index(["held_out_cell_type", "seed"]) for s, v in (candidate, baseline)]
            shared = pair[0].index.intersection(pair[1].index)
            if shared.empty:
                continue
            for metric in RULE_METRICS:
                new, old = pair[0].loc[shared, metric], pair[1].loc[shared, metric]
                seed_sd = np.sqrt(pair[1][metric].groupby(level=0).var().mean())
                margin = -0.5 * seed_sd / (1 if dataset == PICKED_ON else picked_from)
                difference = (new - old).mean()
                passed = ("undetermined (one seed per type so far)" if np.isnan(margin)
                          else "yes" if difference >= margin else "no")
                rows.append({"dataset": dataset, "prediction_version": version,
                             "rule": rule, "metric": metric,
                             "runs": len(shared), "types": shared.get_level_values(0).nunique(),
                             "mean_difference": round(difference, 4),
                             "margin": round(margin, 4), "passed": passed})
    return pd.DataFrame(rows)


def verdicts_block(verdicts: pd.DataFrame, datasets=()) -> str:
    """The verdicts table, then one line per rule: where it fails, passes, is undetermined,
    and which of ``datasets`` (every dataset in the record) cannot judge it yet."""
    if verdicts.empty:
        return "(no dataset has both rows of a rule yet)"
    shown = verdicts.assign(metric=verdicts["metric"].map(SHORT),
                            passed=verdicts["passed"].replace({"no": "**no**"}))
    table = shown.to_markdown(index=False, floatfmt=".4f")
    lines = []
    for rule in (r[0] for r in DATASET_RULES):
        rows = verdicts[verdicts["rule"] == rule]
        outcome = {dataset: ("fails" if (group["passed"] == "no").any() else
                             "passes" if (group["passed"] == "yes").all() else "undetermined")
                   for dataset, group in rows.groupby("dataset")}
        said = [f"{word} on {', '.join(d for d, o in outcome.items() if o == word)}"
                for word in ("fails", "passes", "undetermined") if word in outcome.values()]
        unjudged = [d for d in datasets if d not in outcome]
        if unjudged:
            said.append(f"not judged yet on {', '.join(unjudged)}: the rows of "
                        f"{'its' if len(unjudged) == 1 else 'their'} latest prediction "
                        "version lack this rule's pair")
        lines.append(f"- **{rule}**: " + "; ".join(said))
    return table + "\n\n" + "\n".join(lines)


def rescoring_block(everything: pd.DataFrame) -> str:
    """Per dataset, its rows on an older prediction version than its latest, per stage and
    version: no table shows them (rows of two versions are never compared), so this says
    what each dataset's tables leave out until those rows are made again."""
    newest = everything.groupby("dataset")["prediction_version"].transform("max")
    older = everything[everything["prediction_version"] < newest]
    sections = []
    for dataset, rows in older.groupby("dataset", sort=True):
        everyone = everything[everything["dataset"] == dataset]
        latest_version = everyone["prediction_version"].max()
        per_stage = (rows.groupby(["stage", "prediction_version"], sort=True)
                     .agg(rows=("variant", "size"),
                          variants=("variant", lambda v: "; ".join(dict.fromkeys(v))))
                     .reset_index())
        sections.append(
            f"**{dataset}**: {len(rows)} of its {len(everyone)} rows are on an older prediction "
            f"version than its latest ({latest_version}); its tables show the other "
            f"{len(everyone) - len(rows)}:\n\n" + per_stage.to_markdown(index=False))
    return "\n\n".join(sections) or "(every dataset's rows are on its latest prediction version)"


def blocks(table: pd.DataFrame, everything: pd.DataFrame) -> dict[str, str]:
    """Every dataset's rows (``table``, one dataset's, is not used)."""
    out = {"ablation-datasets-rules": verdicts_block(
               rule_verdicts(everything), sorted(everything["dataset"].unique())),
           "ablation-datasets-cost": cost_block(everything),
           "ablation-datasets-rescoring": rescoring_block(everything)}
    for metric in DATASET_METRICS:
        out[f"ablation-datasets-{metric}"] = datasets_block(everything, metric)
    return out
