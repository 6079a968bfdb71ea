"""The converged ablation's tables and figure, drawn from its CSV alone (no training).

    python -m scgen_ablation.ablation_record --report --doc docs/ablation.md README.md

The *ladder* is the path the notebooks climb, one component at a time: the
plain autoencoder (01), the VAE at β = 1 (02), β at scGen's 5e-5 (03), δ from
balanced cell types (04; the full scGen, the same runs as 05).  Every mean is
over the same (held-out type, seed) runs for every row of a table.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .metrics import BASELINES, FIELD_METRICS, LOWER_IS_BETTER, METRIC_LABELS, METRICS
from .paths import PROJECT_ROOT
from .record import check_rows, read_csv
from .study_report import ABLATION_BLOCKS, markdown, write_blocks

REFERENCE = "authors' scGen (reference)"
VERDICTS = PROJECT_ROOT / "benchmarks" / "results" / "dataset_verdicts.csv"  # docs/datasets.md

LADDER = {  # (stage, variant) -> what that step adds
    ("01_autoencoder", "paper"): "01 plain autoencoder",
    ("02_vae", "paper"): "02 + sampling and KL (VAE, β = 1)",
    ("03_kl_weighting", "kl_weight=5e-05"): "03 + KL weight β = 5e-5",
    ("04_balancing", "balanced delta"): "04 + balanced δ (= scGen, 05)",
}
SHOWN = ("r2_mean_all", "r2_mean_top100", "r2_var_all", "pcc_delta_top100",
         "deg_overlap_top100", "edistance")
SHORT = {"r2_mean_all": "R² mean, all", "r2_mean_top100": "R² mean, top-100",
         "r2_var_all": "R² var, all", "r2_var_top100": "R² var, top-100",
         "pcc_delta_all": "r of change, all", "pcc_delta_top100": "r of change, top-100",
         "deg_overlap_top100": "DEGs found", "deg_direction_top100": "DEG direction",
         "edistance": "E-distance ↓"}


def load(csv: Path) -> pd.DataFrame:
    """The record, in stage order (the stage files' variant order within a stage)."""
    table = pd.read_csv(csv)
    if "status" not in table:
        table["status"] = "ok"
    if "source" not in table:  # rows this record made itself
        table["source"] = "record"
    table["run"] = table["held_out_cell_type"] + " · " + table["seed"].astype(str)
    return table.sort_values("stage", kind="stable").reset_index(drop=True)


def scored(table: pd.DataFrame) -> pd.DataFrame:
    """The rows with metrics (a diverged training has none)."""
    return table[table["status"] == "ok"]


def reference_rows() -> pd.DataFrame | None:
    """The authors' scGen on the same split (../shared/reference; R² only), if present."""
    from .comparison import reference_runs

    ref = reference_runs()
    if ref is None:
        return None
    ref = ref.rename(columns={"cell_type": "held_out_cell_type"})
    ref["run"] = ref["held_out_cell_type"] + " · " + ref["seed"].astype(str)
    return ref[["run", "held_out_cell_type", "seed", *METRICS]].assign(method=REFERENCE)


def with_baselines(model_rows: pd.DataFrame) -> pd.DataFrame:
    """``model_rows`` (with a ``method`` column), then the authors' scGen and each
    baseline on the same runs (the baselines read from the rows' ``<baseline>_`` columns,
    once per run)."""
    parts = [model_rows]
    reference = reference_rows()
    if reference is not None:
        parts.append(reference[reference["run"].isin(set(model_rows["run"]))])
    runs = model_rows.drop_duplicates("run")
    for name, label in BASELINES.items():
        columns = {f"{name}_{m}": m for m in (*METRICS, *FIELD_METRICS) if f"{name}_{m}" in runs}
        parts.append(runs[["run", "held_out_cell_type", "seed", *columns]]
                     .rename(columns=columns).assign(method=label))
    return pd.concat(parts, ignore_index=True)


def methods(table: pd.DataFrame) -> pd.DataFrame:
    """Long table: one row per (method, run) for the ladder's steps, the authors' scGen
    and the baselines, on the runs every step has."""
    table = scored(table)
    steps = pd.concat([table[(table["stage"] == stage) & (table["variant"] == variant)]
                       .assign(method=label) for (stage, variant), label in LADDER.items()],
                      ignore_index=True)
    shared = set.intersection(*(set(g["run"]) for _, g in steps.groupby("method")))
    return with_baselines(steps[steps["run"].isin(shared)])


def mean_sd(long: pd.DataFrame, by: str = "method", metrics=SHOWN) -> pd.DataFrame:
    metrics = [m for m in metrics if m in long]
    grouped = long.groupby(by, sort=False)[metrics]
    mean, sd = grouped.mean(), grouped.std()
    out = (mean.round(3).astype(str) + " ± " + sd.round(3).astype(str)).where(mean.notna(), "—")
    out["runs"] = grouped.size()
    out.columns = [SHORT.get(c, c) for c in out.columns]
    return out


def ladder_block(table: pd.DataFrame) -> str:
    long = methods(table)
    runs = long[long["method"] == next(iter(LADDER.values()))]
    return (markdown(mean_sd(long)) + f"\n\nMean ± sd over {len(runs)} held-out runs "
            f"({runs['held_out_cell_type'].nunique()} cell types × "
            f"{runs['seed'].nunique()} seeds); ↓: lower is better.")


def variants_block(table: pd.DataFrame) -> str:
    """Every (stage, variant) on all its scored runs (not only the runs all share)."""
    table = scored(table)
    table = table.assign(method=table["stage"] + " · " + table["variant"])
    return markdown(mean_sd(table)) + (
        "\n\nMean ± sd over each variant's own runs (see the coverage table); ↓: lower is "
        "better; —: not computed (rows the small-data study made, whose weights it did not "
        "keep: the coverage table's `source`).")


def per_type_block(table: pd.DataFrame, metric: str = "r2_mean_top100") -> str:
    long = methods(table)
    wide = long.groupby(["method", "held_out_cell_type"], sort=False)[metric].mean().unstack()
    wide = wide.loc[list(dict.fromkeys(long["method"]))]
    return markdown(wide.round(3)) + f"\n\n{METRIC_LABELS[metric]}, mean over seeds."


def rules_block(table: pd.DataFrame) -> str:
    """Stage 06's prediction levers ranked by the study's rule on R² and by the same rule
    on the field's metrics (stated in docs/metrics.md before it was applied)."""
    from .study import (FIELD_RANKED_METRICS, PREDICTION_LEVERS, RANKED_METRICS, average_ranks,
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


STUDY_RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def same_runs_difference(record_rows: pd.DataFrame, study: pd.DataFrame, label: str,
                         study_label: str, digits: int) -> tuple[pd.DataFrame, int]:
    """Record rows against the study's rows of the same (type, seed): the mean and the
    largest absolute difference of the first three R², beside the study's seed sd."""
    metrics = list(METRICS[:3])
    before = study.set_index(["cell_type", "seed"])[metrics]
    after = record_rows.set_index(["held_out_cell_type", "seed"])[metrics]
    after.index.names = before.index.names
    shared = after.index.intersection(before.index)
    difference = (after.loc[shared] - before.loc[shared]).abs()
    out = pd.DataFrame({f"{label}, mean abs. difference": difference.mean(),
                        f"{label}, largest difference": difference.max(),
                        f"sd over seeds ({study_label}), mean over types":
                            study.groupby("cell_type")[metrics].std().mean()}).T
    out.columns = [SHORT[c] for c in out.columns]
    return out.round(digits), len(shared)


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


def device_block(table: pd.DataFrame, study_csv: Path | None = None) -> str:
    """The paper preset trained on the GPU (the record's stage 05) against the same
    training made on the CPU (the study's `paper` rows): same configuration and seed."""
    study_csv = study_csv or STUDY_RESULTS / "small_data_prediction.csv"
    rows = scored(table)
    gpu = rows[(rows["stage"] == "05_scgen") & (rows["variant"] == "paper")
               & (rows["device"] == "cuda")]
    if gpu.empty or not study_csv.exists():
        return "(no GPU `paper` rows in the record yet)"
    study = pd.read_csv(study_csv)
    study = study[(study["lever"] == "paper") & (study["device"] == "cpu")]
    out, runs = same_runs_difference(gpu, study, "GPU vs CPU", "CPU", 3)
    return markdown(out) + (f"\n\nThe paper preset, same configuration and seed, {runs} "
                            "held-out runs; only the device (and the thread count) differ.")


BEYOND = "07_beyond"
TOLERANCE = 1e-6  # "at least": equal up to float rounding (a constant shift keeps the variance)


def beyond_block(table: pd.DataFrame) -> str:
    """Stage 07's variants with the baselines, each over its own runs."""
    rows = scored(table)
    rows = rows[rows["stage"] == BEYOND]
    if rows.empty:
        return "(no stage 07 rows in the record yet)"
    return markdown(mean_sd(with_baselines(rows.assign(method=rows["variant"]))))


def beyond_per_type_block(table: pd.DataFrame, metric: str = "r2_mean_top100") -> str:
    rows = scored(table)
    rows = rows[rows["stage"] == BEYOND]
    if rows.empty:
        return "(no stage 07 rows in the record yet)"
    wide = rows.pivot_table(index="variant", columns="held_out_cell_type", values=metric,
                            sort=False)
    wide.loc["gene-space arithmetic"] = rows.groupby("held_out_cell_type")[f"gene_arith_{metric}"].mean()
    reference = reference_rows()
    if reference is not None and metric in reference:
        wide.loc[REFERENCE] = reference.groupby("held_out_cell_type")[metric].mean()
    seeds = rows.groupby("variant")["seed"].nunique()
    wide["seeds"] = seeds.reindex(wide.index)
    return markdown(wide.round(3)) + f"\n\n{METRIC_LABELS[metric]}, mean over the seeds shown."


def beyond_rule_block(table: pd.DataFrame) -> str:
    """The rule stated in the stage file (the study's, on R²) and the same rule on the
    field's metrics, over the runs that every compared variant has: all the variants,
    and (when some have fewer runs) the best-covered ones on all of theirs."""
    from .study import FIELD_RANKED_METRICS, RANKED_METRICS, average_ranks

    rows = scored(table)
    rows = rows[rows["stage"] == BEYOND].rename(columns={"held_out_cell_type": "cell_type",
                                                        "variant": "lever"})
    if rows.empty:
        return "(no stage 07 rows in the record yet)"
    runs = rows.groupby("lever")["run"].agg(set)
    groups = [list(runs.index)]
    widest = [lever for lever in runs.index if len(runs[lever]) == max(map(len, runs))]
    if len(widest) < len(runs):
        groups.append(widest)
    lines = []
    for levers in groups:
        shared = set.intersection(*(runs[lever] for lever in levers))
        mine = rows[rows["lever"].isin(levers) & rows["run"].isin(shared)]
        ranks = pd.DataFrame({"R² rule": average_ranks(mine, RANKED_METRICS),
                              "field rule": average_ranks(mine, FIELD_RANKED_METRICS)})
        ranks = ranks.sort_values("R² rule", kind="stable")
        lines += [f"On the {len(shared)} runs ({mine['cell_type'].nunique()} types × "
                  f"{mine['seed'].nunique()} seeds) that these {len(levers)} variants share, "
                  f"average rank (1 = best):", "", markdown(ranks.round(2).rename_axis("variant")),
                  "", f"The stated rule picks **{ranks.index[0]}**.", ""]
    return "\n".join(lines).rstrip()


def beyond_goal_block(table: pd.DataFrame) -> str:
    """Issue #18's goal, per variant: on every held-out type (mean over its seeds), mean R²
    (all genes, top-100) at least the reference's and gene-space arithmetic's; variance R²
    at least gene-space arithmetic's on average; r of change (top-100) above every
    baseline's."""
    rows = scored(table)
    rows = rows[rows["stage"] == BEYOND]
    if rows.empty:
        return "(no stage 07 rows in the record yet)"
    reference = reference_rows()
    ref = reference.groupby("held_out_cell_type")[list(METRICS)].mean() if reference is not None else None
    lines = []
    for variant, mine in rows.groupby("variant", sort=False):
        per_type = mine.groupby("held_out_cell_type").mean(numeric_only=True)
        misses = []
        for cell_type, r in per_type.iterrows():
            for metric in ("r2_mean_all", "r2_mean_top100"):
                bars = [r[f"gene_arith_{metric}"]]
                if ref is not None and cell_type in ref.index:
                    bars.append(ref.loc[cell_type, metric])
                if r[metric] < max(bars) - TOLERANCE:
                    misses.append(f"{cell_type} {SHORT[metric]} {r[metric]:.3f} < {max(bars):.3f}")
            best = max(r[f"{b}_pcc_delta_top100"] for b in BASELINES)
            if not r["pcc_delta_top100"] > best + TOLERANCE:
                misses.append(f"{cell_type} r of change {r['pcc_delta_top100']:.3f} ≤ {best:.3f}")
        if per_type["r2_var_all"].mean() < per_type["gene_arith_r2_var_all"].mean() - TOLERANCE:
            misses.append(f"variance R² on average {per_type['r2_var_all'].mean():.3f} < "
                          f"{per_type['gene_arith_r2_var_all'].mean():.3f}")
        seeds = ", ".join(map(str, sorted(mine["seed"].unique())))
        lines.append(f"- **{variant}** ({len(per_type)} types, seeds {seeds}): "
                     + ("every bar met" if not misses else f"{len(misses)} missed: "
                        + "; ".join(misses)))
    return "\n".join(lines)


def coverage_block(table: pd.DataFrame) -> str:
    counts = table.groupby(["stage", "variant"], sort=False).agg(
        runs=("run", "nunique"), diverged=("status", lambda s: int((s == "diverged").sum())),
        cell_types=("held_out_cell_type", "nunique"),
        seeds=("seed", "nunique"), devices=("device", lambda d: ", ".join(sorted(set(map(str, d))))),
        source=("source", lambda s: ", ".join(sorted(set(s.fillna("record"))))),
        train_s=("train_seconds", "median"), epochs=("epochs_run", "median"))
    counts["train_s"] = counts["train_s"].round(0)
    return markdown(counts.reset_index(), index=False) + (
        "\n\n`runs`: (held-out type, seed) pairs recorded; `diverged`: of those, trainings "
        "whose loss became NaN (no metrics); `train_s`, `epochs`: medians; `source`: "
        "`record` for rows this record trained and scored, a CSV's name for rows it "
        "imported from the small-data study (`ablation_record --from-study`).")


RESIDUAL = ("06_small_data", "paired delta + residual decoding")


def ladder_figure(table: pd.DataFrame, metrics=("r2_mean_all", "r2_mean_top100", "r2_var_all",
                                                 "pcc_delta_top100"), long=None,
                  title="The ablation ladder at convergence: every held-out type and seed "
                        "(dots), their mean (bars)") -> plt.Figure:
    """Each method's runs as dots (one colour per held-out type) and their mean as a bar."""
    long = methods(table) if long is None else long
    order = list(dict.fromkeys(long["method"]))
    types = sorted(long["held_out_cell_type"].unique())
    colours = dict(zip(types, plt.cm.tab10(np.arange(len(types)))))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 4.6), sharey=False)
    for ax, metric in zip(np.atleast_1d(axes), metrics):
        for i, method in enumerate(order):
            mine = long[long["method"] == method]
            ax.barh(i, mine[metric].mean(), color="0.85", height=0.7)
            jitter = np.linspace(-0.25, 0.25, len(mine)) if len(mine) > 1 else [0]
            ax.scatter(mine[metric], i + np.asarray(jitter), s=9,
                       c=[colours[t] for t in mine["held_out_cell_type"]], zorder=3)
        ax.set_yticks(range(len(order)))
        ax.set_yticklabels(order if ax is np.atleast_1d(axes)[0] else [], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(textwrap.fill(METRIC_LABELS[metric], 40), fontsize=9)
        low = np.nanmin(long[metric])
        ax.set_xlim(max(0.0, low - 0.05) if metric not in LOWER_IS_BETTER else 0, None)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colours[t], label=t) for t in types]
    fig.legend(handles=handles, loc="lower center", ncol=len(types), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    return fig


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


# --- beyond one dataset (docs/datasets.md) ---------------------------------------------------

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
GENE_ARITHMETIC = "gene-space arithmetic"
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
    table = scored(everything)
    parts = [table[(table["stage"] == stage) & (table["variant"] == variant)].assign(method=label)
             for (stage, variant), label in COMPONENTS.items()]
    scgen = table[(table["stage"] == "05_scgen") & (table["variant"] == "paper")]
    columns = {f"gene_arith_{m}": m for m in DATASET_METRICS if f"gene_arith_{m}" in scgen}
    parts.append(scgen[["dataset", "run", "held_out_cell_type", "seed", *columns]]
                 .rename(columns=columns).assign(method=GENE_ARITHMETIC))
    return pd.concat(parts, ignore_index=True)


def datasets_block(everything: pd.DataFrame, metric: str) -> str:
    """One metric, each component (rows) on each dataset (columns): mean ± sd over runs."""
    long = components(everything)
    order = [*COMPONENTS.values(), GENE_ARITHMETIC]
    grouped = long.groupby(["method", "dataset"])[metric]
    sd = grouped.std().round(3).astype(str)
    cells = (grouped.mean().round(3).astype(str) + (" ± " + sd).where(grouped.size() > 1, "")
             + " (" + grouped.size().astype(str) + ")").unstack()
    cells = cells.reindex([m for m in order if m in cells.index]).fillna("—")
    return markdown(cells.rename_axis(SHORT.get(metric, metric))) + (
        f"\n\n{METRIC_LABELS[metric]}: mean ± sd (runs) over held-out types × seeds on each "
        "dataset; —: not in the record yet.")


def cost_block(everything: pd.DataFrame) -> str:
    """What each dataset's rows cost: unique trainings, their summed training time, per device."""
    trained = everything.dropna(subset=["train_seconds"]).drop_duplicates("training_key")
    table = trained.groupby(["dataset", "device"]).agg(
        trainings=("training_key", "size"), hours=("train_seconds", lambda s: s.sum() / 3600),
        seconds_each=("train_seconds", "median"))
    rows = everything.groupby("dataset").size().rename("rows in the record")
    table = table.reset_index().merge(rows.reset_index(), on="dataset")
    return table.round({"hours": 1, "seconds_each": 0}).to_markdown(index=False) + (
        "\n\nTrainings: unique training keys with a recorded time (rows the study imported "
        "carry none); hours: their training time summed (wall time is less where several "
        "ran at once); seconds_each: the median.")


def rule_verdicts(everything: pd.DataFrame) -> pd.DataFrame:
    """docs/datasets.md's verdicts: per dataset, rule and R², the mean paired difference
    (candidate − baseline, same type and seed), the margin (½ the baseline's seed sd pooled
    over types, divided on a new dataset by the number of candidates the choice was picked
    from) and
    whether it passes; only datasets where both rows exist."""
    table = scored(everything)
    rows = []
    for dataset, data in table.groupby("dataset", sort=True):
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
                rows.append({"dataset": dataset, "rule": rule, "metric": metric,
                             "runs": len(shared), "types": shared.get_level_values(0).nunique(),
                             "mean_difference": round(difference, 4),
                             "margin": round(margin, 4), "passed": passed})
    return pd.DataFrame(rows)


def verdicts_block(verdicts: pd.DataFrame) -> str:
    if verdicts.empty:
        return "(no dataset has both rows of a rule yet)"
    shown = verdicts.assign(metric=verdicts["metric"].map(SHORT),
                            passed=verdicts["passed"].replace({"no": "**no**"}))
    table = shown.to_markdown(index=False, floatfmt=".4f")
    lines = []
    for rule, rows in verdicts.groupby("rule", sort=False):
        outcome = {dataset: ("fails" if (group["passed"] == "no").any() else
                             "passes" if (group["passed"] == "yes").all() else "undetermined")
                   for dataset, group in rows.groupby("dataset")}
        said = [f"{word} on {', '.join(d for d, o in outcome.items() if o == word)}"
                for word in ("fails", "passes", "undetermined") if word in outcome.values()]
        lines.append(f"- **{rule}**: " + "; ".join(said))
    return table + "\n\n" + "\n".join(lines)


# Issue #30's goal for one prediction, stated (docs/beyond.md) before its candidates run:
# (metric, the bar it must reach, higher is better). The bars: the best model-free PCA
# response (stage 07, on the paper training), the recommended prediction (step 1: the same
# computation as the preset, on every dataset's paper training), gene-space arithmetic.
ONE_PREDICTION_GOAL = (("r2_mean_all", "best model-free", True),
                       ("r2_mean_top100", "best model-free", True),
                       ("pcc_delta_all", "best model-free", True),
                       ("deg_overlap_top100", "recommended", True),
                       ("r2_var_all", "recommended", True),
                       ("edistance", GENE_ARITHMETIC, False))
STEP_1 = ("06_small_data", "paired delta + residual decoding")


def one_prediction_block(everything: pd.DataFrame) -> str:
    """Per dataset, every distinct prediction in the record (05, 06's prediction levers on
    the paper training, 07's variants) against the goal's bars, on the runs 05 ``paper``
    has: the mean over them. A bar is met within a margin of ½ × the larger pooled seed
    sd (the bar's method's or the candidate's) / the number of methods compared. Methods
    that give the same numbers on every run are one method (named first in stage order)."""
    goal = [m for m, _, _ in ONE_PREDICTION_GOAL]
    table = scored(everything)
    sections = []
    for dataset, data in table.groupby("dataset", sort=True):
        scgen = data[(data["stage"] == "05_scgen") & (data["variant"] == "paper")]
        runs = set(scgen["run"])
        if scgen["seed"].nunique() < 2:
            continue
        picked = data[data["stage"].isin(["05_scgen", "06_small_data", BEYOND])
                      & ((data["stage"] != "06_small_data")
                         | data["variant"].isin(["paper", STEP_1[1]]))
                      & data["run"].isin(runs)]
        long = picked.assign(method=picked["stage"].str[:2] + " " + picked["variant"])
        columns = {f"gene_arith_{m}": m for m in goal}
        long = pd.concat([long, scgen[["run", "held_out_cell_type", "seed", *columns]]
                          .rename(columns=columns).assign(method=GENE_ARITHMETIC)],
                         ignore_index=True)
        complete = [m for m, g in long.groupby("method", sort=False) if set(g["run"]) == runs]
        vectors, aliases = {}, {}
        for method in complete:  # one method per distinct set of numbers
            values = tuple(long[long["method"] == method].sort_values("run")[goal].round(6)
                           .itertuples(index=False, name=None))
            aliases.setdefault(vectors.setdefault(values, method), []).append(method)
        long = long[long["method"].isin(aliases)]
        means = long.groupby("method", sort=False)[goal].mean()
        sds = (long.groupby(["method", "held_out_cell_type"])[goal].var()
               .groupby(level=0).mean() ** 0.5).reindex(means.index)  # pooled seed sd
        k = len(means) - 1  # gene-space arithmetic is a bar, not a candidate
        model_free = [m for m in means.index if m.startswith("07 PCA")]
        recommended = f"{STEP_1[0][:2]} {STEP_1[1]}"
        recommended = next(m for m, same in aliases.items() if recommended in same)
        shown = means.round(3).astype(object)
        met = pd.Series(0, index=means.index)
        bars = []
        for metric, source, higher in ONE_PREDICTION_GOAL:
            column = means.loc[model_free, metric]
            owner = {"best model-free": column.idxmax() if higher else column.idxmin(),
                     "recommended": recommended, GENE_ARITHMETIC: GENE_ARITHMETIC}[source]
            bar = means.loc[owner, metric]
            margin = 0.5 * np.maximum(sds[metric], sds.loc[owner, metric]) / k
            ok = means[metric] >= bar - margin if higher else means[metric] <= bar + margin
            met += ok.astype(int)
            shown[metric] = [f"{v:.3f}" + ("" if good else " ✗") for v, good in
                             zip(means[metric], ok)]
            bars.append(f"{SHORT[metric]} {'≥' if higher else '≤'} {bar:.3f} ({owner})")
        shown["bars met"] = met.astype(str) + f" of {len(goal)}"
        shown = shown.drop(GENE_ARITHMETIC).sort_values("bars met", ascending=False, kind="stable")
        shown.columns = [SHORT.get(c, c) for c in shown.columns]
        same = "; ".join(f"{m} = {', '.join(aliases[m][1:])}" for m in shown.index
                         if len(aliases[m]) > 1)
        sections.append(
            f"**{dataset}**: {len(runs)} runs ({scgen['held_out_cell_type'].nunique()} types × "
            f"seeds {', '.join(map(str, sorted(scgen['seed'].unique())))}), {k} distinct "
            f"methods. Bars: {'; '.join(bars)}.\n\n" + markdown(shown.rename_axis("method"))
            + (f"\n\nThe same numbers on every run: {same}." if same else ""))
    return "\n\n".join(sections) or "(no dataset has 05 paper on two seeds yet)"


def write_report(csv: Path, figures: Path, docs=(), dataset: str = "kang") -> int:
    """The docs' blocks and figures of one dataset's rows (Kang's by default)."""
    if not Path(csv).exists():
        raise SystemExit(f"{csv} does not exist: run python -m scgen_ablation.ablation_record first")
    try:
        rows = check_rows(read_csv(csv), str(csv))
    except ValueError as error:
        raise SystemExit(f"ablation_record --report: {error}") from None
    if rows.empty:
        raise SystemExit(f"ablation_record --report: {csv} holds no rows yet: make some with "
                         "python -m scgen_ablation.ablation_record first")
    everything = load(csv)
    table = everything[everything["dataset"] == dataset].reset_index(drop=True)
    if table.empty:
        raise SystemExit(f"ablation_record --report: {csv} holds no rows of dataset {dataset!r}; "
                         f"it has {sorted(everything['dataset'].unique())}")
    blocks = {"ablation-ladder": ladder_block(table), "ablation-variants": variants_block(table),
              "ablation-per-type": per_type_block(table), "ablation-coverage": coverage_block(table),
              "ablation-device": device_block(table),
              "ablation-field-rule": rules_block(table), "ablation-beyond": beyond_block(table),
              "ablation-beyond-per-type": beyond_per_type_block(table),
              "ablation-beyond-goal": beyond_goal_block(table),
              "ablation-beyond-rule": beyond_rule_block(table),
              "ablation-kang-picks": kang_picks_block(table),
              "ablation-flush": flush_block(table)}
    verdicts = rule_verdicts(everything)
    verdicts.to_csv(Path(csv).with_name(VERDICTS.name), index=False)  # beside the record
    blocks["ablation-datasets-rules"] = verdicts_block(verdicts)
    blocks["ablation-datasets-cost"] = cost_block(everything)
    blocks["ablation-one-prediction"] = one_prediction_block(everything)
    for metric in DATASET_METRICS:
        blocks[f"ablation-datasets-{metric}"] = datasets_block(everything, metric)
    for name, block in blocks.items():
        print(f"## {name}\n\n{block}\n")
    figures.mkdir(parents=True, exist_ok=True)
    for name, draw in (("ablation_ladder.png", ladder_figure), ("field_metrics.png", field_figure)):
        figure = draw(table)
        figure.savefig(figures / name, dpi=120)
        plt.close(figure)
    for doc in docs:
        write_blocks(Path(doc), blocks, mine=lambda name: name.startswith(ABLATION_BLOCKS))
    return 0
