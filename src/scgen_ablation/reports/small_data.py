"""docs/small_data.md: the small-data study's tables, figures and generated blocks.

Everything here reads the study's record (the CSVs of :mod:`study_record`) and
trains nothing::

    python -m scgen_ablation.study_record --report --doc docs/small_data.md README.md

prints the tables of docs/small_data.md, draws its figures into docs/figures/
and rewrites the ``<!-- report: NAME -->`` blocks of the files given.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import comparison, plots, study
from ..metrics import BASELINES, HEADLINE_METRICS, METRIC_LABELS, METRICS
from .common import markdown, write_blocks


def lever_table(scores: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per cell type (and a "mean" row): each lever's ``metric`` and its sd
    over seeds, beside gene-space and PCA arithmetic; the input of plots.r2_bars."""
    grouped = scores.groupby(["cell_type", "lever"], sort=False)[metric]
    wide = grouped.mean().unstack("lever")
    wide = wide.join(grouped.std().unstack("lever").add_suffix("_sd"))
    for name in ("gene_arith", "pca_arith"):
        wide[BASELINES[name]] = scores.groupby("cell_type")[f"{name}_{metric}"].mean()
    levers = list(dict.fromkeys(scores["lever"]))
    wide.loc["mean"] = wide.mean()
    wide.loc["mean", [f"{lever}_sd" for lever in levers]] = float("nan")
    return wide.rename_axis("cell_type").reset_index()


def lever_figures(scores: pd.DataFrame, what: str) -> dict:
    """One bar chart per ranked metric: every lever per cell type (± sd over seeds),
    gene-space and PCA arithmetic drawn across each group as reference lines."""
    levers = list(dict.fromkeys(scores["lever"]))
    lines = {BASELINES[name]: BASELINES[name] for name in ("gene_arith", "pca_arith")}
    return {metric: plots.r2_bars(lever_table(scores, metric), levers, "cell_type",
                                  f"{metric}: {what}", markers=lines)
            for metric in HEADLINE_METRICS}


def comparison_table(paper: pd.DataFrame, recommended: pd.DataFrame,
                     reference: pd.DataFrame | None = None,
                     metrics=METRICS
                     ) -> pd.DataFrame:
    """Per cell type: reference, baselines, paper config, kang_picks; mean and sd over seeds.

    ``paper`` and ``recommended`` are score rows (the baselines come from ``paper``'s).
    """
    parts = []
    for name, label in BASELINES.items():
        columns = {f"{name}_{m}": m for m in metrics}
        renamed = paper[["cell_type", *columns]].rename(columns=columns)
        parts.append(renamed.assign(method=label)[["method", "cell_type", *metrics]])
    parts.append(paper.assign(method="paper config")[["method", "cell_type", *metrics]])
    parts.append(recommended.assign(method="kang_picks")[["method", "cell_type", *metrics]])
    if reference is not None:
        parts.append(reference.assign(method="reference scGen")[["method", "cell_type", *metrics]])
    table = pd.concat(parts, ignore_index=True)
    grouped = table.groupby(["cell_type", "method"], sort=False)[list(metrics)]
    out = grouped.mean().join(grouped.std().add_suffix("_sd"))
    out["seeds"] = grouped.size()
    return out.reset_index()


def comparison_figures(table: pd.DataFrame) -> dict:
    """One bar chart per ranked metric from ``comparison_table``: reference, paper
    config and kang_picks per cell type (± sd over seeds), the baselines as lines."""
    figures = {}
    for metric in HEADLINE_METRICS:
        wide = table.pivot(index="cell_type", columns="method", values=metric)
        wide = wide.join(table.pivot(index="cell_type", columns="method",
                                     values=f"{metric}_sd").add_suffix("_sd")).reset_index()
        methods = [m for m in ("reference scGen", "paper config", "kang_picks") if m in wide]
        figures[metric] = plots.r2_bars(wide, methods, "cell_type",
                                        f"{metric}, per held-out cell type",
                                        markers={m: m for m in BASELINES.values()})
    return figures


def write_report(prediction_csv: Path, training_csv: Path, figures: Path, doc=()) -> int:
    """Print the tables of docs/small_data.md from the study's CSVs and draw its figures;
    rewrite the generated blocks (``<!-- report: NAME -->``) of every markdown file in ``doc``."""
    import matplotlib

    matplotlib.use("Agg")
    scores = study.step1_scores(prediction_csv)
    cell_types = sorted(scores["cell_type"].unique())
    print(f"{prediction_csv}: {len(scores)} rows, cell types {cell_types}, "
          f"seeds {sorted(map(int, scores.seed.unique()))}\n")
    metrics = list(study.RANKED_METRICS) + ["r2_var_top100"]
    figures.mkdir(parents=True, exist_ok=True)
    blocks = {}  # name -> markdown, the doc's generated blocks

    def show(name: str, heading: str, text: str):
        blocks[name] = text
        print(f"## {heading}\n\n{text}\n")

    def save(drawn: dict, prefix: str):
        for metric, figure in drawn.items():
            figure.savefig(figures / f"{prefix}{metric}.png", dpi=110)

    def ranked(table: pd.DataFrame) -> str:
        by_lever = table.groupby("lever", sort=False)[metrics].mean()
        by_lever["average rank"] = study.average_ranks(table)
        return markdown(by_lever.sort_values("average rank"))

    show("step1", "Step 1: prediction levers on the paper configuration's models", ranked(scores))
    prediction = study.select_lever(scores)
    print(f"Step 1 picks: {prediction}\n")
    show("step1-loo", "Step 1, leave-one-type-out",
         markdown(study.leave_one_type_out(scores), index=False))
    save(lever_figures(scores, "prediction levers, paper training"), "small_data_prediction_")
    by_seed = scores[scores["lever"] == prediction].pivot(index="cell_type", columns="seed",
                                                          values="r2_mean_top100")
    show("step1-by-seed", "Step 1's pick, R² of the mean over the top-100 DEGs, per seed",
         markdown(by_seed.rename(columns=lambda seed: f"seed {seed}")))

    training = pd.read_csv(training_csv) if training_csv.exists() else None
    if training is not None:
        runs = training.groupby(["lever", "prediction"])
        show("training-runs", f"Training levers ({training_csv.name}): every run, mean over the runs made",
             markdown(runs[metrics].mean().join(runs["cell_type"].agg(
                 lambda c: f"{c.nunique()} types").rename("cell types")).join(
                 runs["seed"].agg(lambda s: sorted(set(s))).rename("seeds"))))
        on_paper = study.training_candidates(scores, training, "paper")
        show("step2-paper", f"Training levers on top of `paper`, seeds {seed_list(on_paper)}, "
                            f"all {len(cell_types)} types", ranked(on_paper))
        candidates = study.training_candidates(scores, training, prediction)
        show("step2", f"Step 2: training levers on top of `{prediction}`, seeds "
                      f"{seed_list(candidates)}, all {len(cell_types)} types", ranked(candidates))
        show("step2-vs-none", "Step 2, each lever against no training lever, per type",
             against_none(candidates))
        show("step2-loo", "Step 2, leave-one-type-out",
             markdown(study.leave_one_type_out(candidates), index=False))
        save(lever_figures(candidates, f"training levers + {prediction}, "
                                             f"seeds {seed_list(candidates)}"),
             "small_data_training_")
        show("timings", "Training seconds per run, by device and network size",
             timings(scores, training))
        check = training_csv.with_name("small_data_device_check.csv")
        if check.exists():
            show("device-check", "The same runs on CPU and GPU", device_check(training, pd.read_csv(check)))
    pick = study.recommend(scores, training)
    recommended = study.complete_seeds(pick.rows, cell_types)
    seeds = sorted(map(int, recommended["seed"].unique()))
    print(f"## Kang picks = {pick.label}: {pick.changes}; seeds {seeds}\n")
    reference = comparison.reference_runs()
    paper = scores[scores["lever"] == "paper"]
    table = comparison_table(paper, recommended, reference)
    parts = []
    for metric in metrics:
        wide = table.pivot(index="cell_type", columns="method", values=metric)
        sd = table.pivot(index="cell_type", columns="method", values=f"{metric}_sd")
        cells = wide.round(3).astype(str) + " ± " + sd.round(3).astype(str)
        cells.loc["mean"] = wide.mean().round(3).astype(str)
        parts.append(f"{METRIC_LABELS[metric]}, mean ± sd over seeds:\n\n{cells.to_markdown()}")
    show("comparison", f"Kang picks ({pick.label}) against the reference and the baselines",
         "\n\n".join(parts))
    goal = goal_table(table)
    show("goal", "The goal, per held-out type (kang_picks vs reference / gene-space)",
         markdown(goal, index=False))
    show("goal-missed", "Where the goal is missed", missed(goal, table, seeds))
    alone = comparison_table(paper, scores[scores["lever"] == prediction], reference)
    if pick.label != prediction:
        show("goal-step1", f"The goal for step 1's pick alone ({prediction}; 3 seeds)",
             markdown(goal_table(alone), index=False))
    show("summary", "Mean over the held-out types and seeds", summary_block(table, alone, pick, prediction, seeds))
    if training is not None:
        show("goal-by-lever", f"The goal for every step-2 candidate (on top of {prediction})",
             goal_by_lever(candidates, paper, reference))
    from ..config import preset
    from ..data import load

    responses = study.response_table(load("kang"), preset("paper"), cell_types)
    show("response", "Each type's response against the others' mean response (the data, no model)",
         markdown(responses, index=False))
    save(comparison_figures(table), "small_data_")
    print(f"figures written to {figures}")
    for path in doc or ():
        write_blocks(path, blocks)
        print(f"generated blocks of {path} rewritten")
    return 0


def against_none(candidates: pd.DataFrame) -> str:
    """Per lever and cell type: each ranked metric's change from "no training
    lever" (same seed), and the epochs each training ran (best epoch)."""
    per_type = candidates.groupby(["lever", "cell_type"], sort=False)
    none = per_type[list(study.RANKED_METRICS)].mean().loc[study.NO_TRAINING_LEVER]
    parts = []
    for metric in study.RANKED_METRICS:
        change = per_type[metric].mean().unstack("cell_type") - none[metric]
        parts.append(f"Change in {METRIC_LABELS[metric]}:\n\n"
                     + markdown(change.drop(study.NO_TRAINING_LEVER)))
    epochs = per_type[["epochs_run", "best_epoch"]].mean().astype(int)
    epochs = (epochs["epochs_run"].astype(str) + " (" + epochs["best_epoch"].astype(str) + ")")
    epochs = epochs.unstack("cell_type")
    seconds = candidates.groupby(["lever", "device"], sort=False)["train_seconds"].mean().round()
    for device, column in seconds.unstack("device").items():
        epochs[f"training s, {device}"] = column
    parts.append("Epochs run (best epoch), and training seconds:\n\n" + epochs.to_markdown())
    return "\n\n".join(parts)


def timings(scores: pd.DataFrame, training: pd.DataFrame) -> str:
    """Seconds per training (one per run, not per prediction scored on it), by device
    and by network: the paper's size, the smaller network, and 200 epochs."""
    runs = pd.concat([scores.drop_duplicates(["cell_type", "seed"]).assign(lever="paper"),
                      training.drop_duplicates(["cell_type", "seed", "lever"])])
    network = runs["lever"].map({"latent 20, width 256": "256-256-20",
                                 "200 epochs": "800-800-100, 200 epochs"}).fillna("800-800-100")
    table = runs.groupby([runs["device"], network])["train_seconds"].describe().round()
    table.index = [f"{device}, {size}" for device, size in table.index]
    return markdown(table[["count", "min", "50%", "max"]].rename(columns={"50%": "median"})
                    .rename_axis("device, network"))


def seed_list(scores: pd.DataFrame) -> str:
    return ", ".join(map(str, sorted(map(int, scores["seed"].unique()))))


def device_check(training: pd.DataFrame, check: pd.DataFrame) -> str:
    """Runs trained on the GPU that were also trained on the CPU (same lever, type and
    seed): how far the device alone moves each score, GPU minus CPU."""
    keys = ["cell_type", "seed", "lever", "prediction"]
    both = check.merge(training[training["device"] == "cpu"], on=keys, suffixes=(" gpu", " cpu"))
    changes = pd.DataFrame({metric: both[f"{metric} gpu"] - both[f"{metric} cpu"]
                            for metric in HEADLINE_METRICS})
    changes["runs"] = both["lever"] + ", " + both["prediction"]
    table = changes.groupby("runs").agg(["mean", "std", "min", "max"])
    pairs = both.groupby(["lever", "prediction"]).size().iloc[0]
    table = table.T
    table.index = [f"{metric}, {statistic}" for metric, statistic in table.index]
    return (f"GPU minus CPU, over {pairs} pairs (cell types × seeds {seed_list(both)}):\n\n"
            + markdown(table.rename_axis("change")))


def goal_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per cell type: does the kang_picks preset reach the reference and gene-space?"""
    rows = []
    for cell_type, group in table.groupby("cell_type"):
        values = group.set_index("method")
        row = {"cell_type": cell_type}
        for metric in HEADLINE_METRICS:
            ours = values.loc["kang_picks", metric]
            bars = [values.loc[m, metric] for m in ("reference scGen", "gene-space arithmetic")
                    if m in values.index]
            row[metric] = f"{ours:.3f} vs {' / '.join(f'{b:.3f}' for b in bars)}: " + (
                "yes" if all(ours >= b for b in bars) else "**no**")
        rows.append(row)
    return pd.DataFrame(rows)


def summary_block(table: pd.DataFrame, alone: pd.DataFrame, pick, prediction: str, seeds) -> str:
    """Every method's mean over held-out types (each type's mean over seeds)."""
    means = table.groupby("method")[list(METRIC_LABELS)[:3]].mean()
    means.loc[f"step 1's pick alone ({prediction})"] = (
        alone[alone["method"] == "kang_picks"][list(means.columns)].mean())
    order = {"control as prediction": "control as prediction",
             "gene-space arithmetic": "gene-space arithmetic",
             "PCA-space arithmetic": "PCA-space arithmetic",
             "reference scGen": "authors' scGen (reference, same split)",
             "paper config": "**this scGen, `paper` preset**",
             f"step 1's pick alone ({prediction})": f"this scGen, step 1's pick alone ({prediction})",
             "kang_picks": f"**this scGen, `kang_picks` preset** ({pick.label}; seeds "
                            f"{', '.join(map(str, seeds))})"}
    means = means.loc[[m for m in order if m in means.index]].rename(index=order)
    means.columns = [METRIC_LABELS[c] for c in means.columns]
    return markdown(means.rename_axis("method"))


def missed(goal: pd.DataFrame, table: pd.DataFrame, seeds) -> str:
    """The goal's misses as a list, each with the numbers behind it."""
    values = table.set_index(["cell_type", "method"])
    lines = []
    for _, row in goal.iterrows():
        for metric in ("r2_mean_all", "r2_mean_top100"):
            if row[metric].endswith("**no**"):
                ours, sd = (values.loc[(row.cell_type, "kang_picks"), c] for c in (metric, f"{metric}_sd"))
                bars = [f"{name} {values.loc[(row.cell_type, method), metric]:.3f}"
                        for method, name in (("reference scGen", "reference"),
                                             ("gene-space arithmetic", "gene-space"))
                        if (row.cell_type, method) in values.index]
                lines.append(f"- {row.cell_type}, {METRIC_LABELS[metric]}: {ours:.3f} ± {sd:.3f} "
                             f"against {' and '.join(bars)}")
    variance = table.groupby("method")["r2_var_all"].mean()
    ours, bar = variance["kang_picks"], variance["gene-space arithmetic"]
    return (f"With the kang_picks preset (seeds {', '.join(map(str, seeds))}), the goal's mean "
            f"R² is missed on:\n\n" + ("\n".join(lines) or "- no cell type") +
            f"\n\nR² of the variance over all genes averages {ours:.3f} against gene-space "
            f"arithmetic's {bar:.3f}: " + ("the goal's bar is met." if ours >= bar else
                                           "**below** the goal's bar."))


def goal_by_lever(candidates: pd.DataFrame, paper: pd.DataFrame, reference) -> str:
    """For each step-2 candidate: the goal's mean-R² bars it misses (of 14) and whether
    its variance R² reaches gene-space arithmetic's on average.  Read from the truth:
    evidence for the docs, never an input to the rule."""
    rows = []
    for lever, runs in candidates.groupby("lever", sort=False):
        table = comparison_table(paper, runs, reference)
        goal = goal_table(table)
        misses = [f"{row.cell_type} {'all' if metric == 'r2_mean_all' else 'top-100'}"
                  for _, row in goal.iterrows() for metric in ("r2_mean_all", "r2_mean_top100")
                  if row[metric].endswith("**no**")]
        variance = table.groupby("method")["r2_var_all"].mean()
        rows.append({"lever": lever, "bars missed": len(misses),
                     "where": ", ".join(misses) or "none",
                     "variance bar": "met" if variance["kang_picks"] >= variance[
                         "gene-space arithmetic"] else "missed"})
    return markdown(pd.DataFrame(rows).sort_values("bars missed", kind="stable"), index=False)
