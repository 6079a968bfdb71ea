"""What valid log-expression changed: each prediction unclipped and clipped at 0.

    python benchmarks/clipping.py --dataset haber --seeds 0          # stored trainings only
    python benchmarks/clipping.py --report                           # the table from the CSV

Log-expression is never negative, but a decoded or shifted prediction can be, and
tools such as cell-eval refuse it. Since issue #30 every prediction the package
returns has its negative entries set to 0 (``data.as_log_expression``, prediction
version 2); this measures what that changed. For every held-out type the hold-out
rule allows (and each seed), it loads the paper training from the training store
(``--train`` makes the ones it lacks), predicts with the package's final clip
switched off (version 1: the ``paper`` and ``recommended`` presets, stage 07's
model-free PCA transport, the gene-space and PCA-space arithmetic baselines, and
control, valid already), and scores each prediction twice with the package's own
scorer: unclipped, and with its negative entries set to 0 (what the package
returns now). One row per (type, seed, method) with the share of negative entries
and every metric both ways goes to ``benchmarks/results/clipping.csv`` (a rerun
skips the runs it holds).
"""
from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parent / "results" / "clipping.csv"
SHOWN = ("r2_mean_all", "r2_mean_top100", "r2_var_all", "pcc_delta_all", "deg_overlap_top100",
         "edistance")


@contextlib.contextmanager
def unclipped():
    """The package's predictions and baselines as computed, before their final clip at 0."""
    def as_computed(X):
        return np.asarray(X, dtype=np.float32)

    with mock.patch("scgen_ablation.prediction.as_log_expression", as_computed), \
            mock.patch("scgen_ablation.metrics.as_log_expression", as_computed):
        yield


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="haber")
    parser.add_argument("--cell-types", nargs="*", default=None)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train", action="store_true", help="train what the store lacks")
    parser.add_argument("--epochs", type=int, default=None, help="default: the paper's")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--report", action="store_true", help="train nothing: print the table")
    args = parser.parse_args(argv)
    if args.report:
        print(report(pd.read_csv(args.out)))
        return 0

    from scgen_ablation.config import PRESETS, preset
    from scgen_ablation.data import DATASETS, dense, holdable_types_of, load_for
    from scgen_ablation.experiment import score_all, score_variants
    from scgen_ablation.record import Record
    from scgen_ablation.store import TrainingStore

    record = Record(args.out, key=["dataset", "held_out_cell_type", "seed", "method"], leading=[])
    done = record.read()
    fields = DATASETS[args.dataset].config_fields() if args.dataset in DATASETS else {}
    base = preset("paper", dataset=args.dataset, num_threads=args.threads, **fields)
    base = base.replace(epochs=args.epochs) if args.epochs else base
    adata = load_for(base)
    store = TrainingStore()
    for seed in args.seeds:
        for cell_type in args.cell_types or holdable_types_of(args.dataset):
            if len(done) and ((done["held_out_cell_type"] == cell_type) & (done["seed"] == seed)).any():
                continue
            training = base.replace(held_out_cell_type=cell_type, seed=seed)
            key = training.replace(keep_best=False).training_key(adata.uns["source_sha256"])
            if not store.has(key) and not args.train:
                print(f"{cell_type} seed {seed}: no stored training (--train makes it)")
                continue
            recommended = training.replace(**PRESETS["recommended"])  # trains as paper does
            variants = {"05 paper": training, "recommended": recommended,
                        "07 PCA · per-cell transport": recommended.replace(  # stage 07's base
                            delta_space="pca", delta_method="transport")}
            with unclipped():
                _, results = score_variants(adata, training, variants, store=store)
            first = results["05 paper"]
            predictions = {name: dense(r.prediction.X) for name, r in results.items()}
            predictions.update({"gene-space arithmetic": first.baseline_predictions["gene_arith"],
                                "PCA-space arithmetic": first.baseline_predictions["pca_arith"],
                                # real cells: valid already, so clipping must change nothing
                                "control as prediction": first.baseline_predictions["control"]})
            rows = []
            for method, X in predictions.items():
                config = results.get(method, first).config
                with unclipped():  # the baselines in score_all as they were scored then
                    as_is, _ = score_all(first.split, X, config, first.degs)
                clipped, _ = score_all(first.split, np.maximum(X, 0), config, first.degs)
                rows.append({"dataset": args.dataset, "held_out_cell_type": cell_type,
                             "seed": seed, "method": method,
                             "negative_share": float((X < 0).mean()),
                             "most_negative": float(X.min()),
                             **{f"{m}": as_is[m] for m in SHOWN},
                             **{f"{m}_clipped": clipped[m] for m in SHOWN}})
                print(f"{cell_type} seed {seed} {method}: {rows[-1]['negative_share']:.1%} "
                      f"negative; R² mean {as_is['r2_mean_all']:.4f} -> "
                      f"{clipped['r2_mean_all']:.4f}", flush=True)
            record.append(rows)
    return 0


def report(table: pd.DataFrame) -> str:
    """Per dataset and method, mean over runs: the negative share, each metric unclipped
    (prediction version 1) and its change when the negative entries are set to 0 (version 2,
    what the package returns)."""
    sections = []
    for dataset, rows in table.groupby("dataset", sort=True):
        grouped = rows.groupby("method", sort=False)
        out = pd.DataFrame({"runs": grouped.size(), "negative entries":
                            grouped["negative_share"].mean().map("{:.1%}".format)})
        for metric in SHOWN:
            out[f"{metric} unclipped"] = grouped[metric].mean().round(4)
            out[f"{metric} change"] = (grouped[f"{metric}_clipped"].mean()
                                       - grouped[metric].mean()).round(4)
        seeds = ", ".join(map(str, sorted(rows["seed"].unique())))
        sections.append(f"**{dataset}** ({rows['held_out_cell_type'].nunique()} types, "
                        f"seeds {seeds})\n\n" + out.T.to_markdown())
    return "\n\n".join(sections)

if __name__ == "__main__":
    raise SystemExit(main())
