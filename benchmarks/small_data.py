"""The small-data study (issue: beat the simplest baseline): levers x held-out types x seeds.

    python benchmarks/small_data.py                       # prediction levers, 7 types x 3 seeds
    python benchmarks/small_data.py --levers training --seeds 0

Each (cell type, seed) trains the paper configuration once and scores every
prediction lever on it; ``--levers training`` trains one model per training
lever instead.  Rows are appended to a CSV as they finish (re-running skips
what is there) and every row is also an MLflow result run (stage 06).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
CELL_TYPES = ["B", "CD14+Mono", "CD4T", "CD8T", "Dendritic", "FCGR3A+Mono", "NK"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell-types", nargs="*", default=CELL_TYPES)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--levers", choices=["prediction", "training"], default="prediction")
    parser.add_argument("--only", nargs="*", default=None, help="only these training levers")
    parser.add_argument("--out", type=Path, default=None,
                        help="CSV (default: benchmarks/results/small_data_<levers>.csv)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--experiment", default="kang")
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--report", action="store_true",
                        help="train nothing: print the tables of docs/small_data.md from the CSV "
                             "and draw its figures into docs/figures/")
    args = parser.parse_args(argv)
    if args.report:
        return report(args.out or HERE / "results" / "small_data_prediction.csv")

    import torch

    import scgen_ablation as sa
    from scgen_ablation import study, tracking

    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or HERE / "results" / f"small_data_{args.levers}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    done = pd.read_csv(out) if out.exists() else pd.DataFrame(columns=["cell_type", "seed", "lever"])
    adata = sa.load("kang")
    for seed in args.seeds:
        for cell_type in args.cell_types:
            config = sa.preset("paper", held_out_cell_type=cell_type, seed=seed,
                               epochs=args.epochs, n_bootstrap=0)
            have = set(done.loc[(done.cell_type == cell_type) & (done.seed == seed), "lever"])
            if args.levers == "prediction":
                if set(study.PREDICTION_LEVERS) <= have:
                    continue
                rows = study.evaluate_prediction_levers(adata, config)
            else:
                rows = [study.evaluate_training_lever(adata, config, lever, changes)
                        for lever, changes in study.TRAINING_LEVERS.items()
                        if lever not in have and (args.only is None or lever in args.only)]
                if not rows:
                    continue
            table = pd.DataFrame(rows)
            table.to_csv(out, mode="a", header=not out.exists(), index=False)
            done = pd.concat([done, table], ignore_index=True)
            if not args.no_mlflow:
                tracking.start(experiment=args.experiment, run_name=f"06_small_data-{cell_type}-{seed}",
                               tags={"stage": "06", "stage_name": "06_small_data"})
                study.log_rows(rows, config)
                tracking.finish()
            best = table.set_index("lever")[list(study.RANKED_METRICS)].round(3)
            print(f"--- {cell_type} seed {seed} ({rows[0]['train_seconds']:.0f} s training)\n{best}",
                  flush=True)
    return 0


def report(path: Path) -> int:
    """The tables and figures of docs/small_data.md, from the study's CSV."""
    import matplotlib

    matplotlib.use("Agg")
    from scgen_ablation import plots, study
    from scgen_ablation.report import REFERENCE_RESULTS

    scores = pd.read_csv(path)
    scores = scores[scores["lever"].isin(study.PREDICTION_LEVERS)]
    # only seeds that finished every cell type, so that every mean covers the same runs
    types_per_seed = scores.groupby("seed")["cell_type"].nunique()
    complete = types_per_seed[types_per_seed == scores["cell_type"].nunique()].index
    scores = scores[scores["seed"].isin(complete)]
    print(f"{path}: {len(scores)} rows, cell types {sorted(scores.cell_type.unique())}, "
          f"seeds {sorted(scores.seed.unique())}\n")
    metrics = list(study.RANKED_METRICS) + ["r2_var_top100"]
    by_lever = scores.groupby("lever", sort=False)[metrics].mean()
    ranks = study.average_ranks(scores)
    by_lever["average rank"] = ranks
    print("Mean over cell types and seeds, and the rule's average rank:\n")
    print(by_lever.sort_values("average rank").round(3).to_markdown())
    recommended = ranks.index[0]
    print(f"\nThe rule picks: {recommended}\n\nLeave-one-type-out (chosen without the type's own scores):\n")
    print(study.leave_one_type_out(scores).round(3).to_markdown(index=False))
    reference = pd.read_csv(REFERENCE_RESULTS) if REFERENCE_RESULTS.exists() else None
    table = study.comparison_table(scores, recommended, reference)
    for metric in metrics:
        wide = table.pivot(index="cell_type", columns="method", values=metric)
        sd = table.pivot(index="cell_type", columns="method", values=f"{metric}_sd")
        cells = wide.round(3).astype(str) + " ± " + sd.round(3).astype(str)
        cells.loc["mean"] = wide.mean().round(3).astype(str)
        print(f"\n{metric} (mean ± sd over seeds)\n")
        print(cells.to_markdown())
    figures = HERE.parent / "docs" / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    for metric in ("r2_mean_all", "r2_mean_top100", "r2_var_all"):
        wide = table.pivot(index="cell_type", columns="method", values=metric).reset_index()
        methods = [m for m in wide.columns
                   if m != "cell_type" and m not in study.BASELINE_LABELS.values()]
        figure = plots.r2_bars(wide, methods, "cell_type", f"{metric}, per held-out cell type",
                               markers={m: m for m in study.BASELINE_LABELS.values()})
        figure.savefig(figures / f"small_data_{metric}.png", dpi=110)
    print(f"\nfigures written to {figures}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
