"""Time to a converged prediction: a stopping rule against the paper's, on every held-out type.

    python benchmarks/stopping.py --seeds 0          # the first candidate: train, resumable
    python benchmarks/stopping.py --report           # its verdict
    python benchmarks/stopping.py --preset kang_picks [--report]   # the same rule on that preset
    python benchmarks/stopping.py --set learning_rate 3e-3 --set epochs 40 ... [--report]

The paper configuration stops after 25 epochs without *any* decrease of the
validation loss, and on Kang that loss creeps down until the 100-epoch cap.
A candidate is a set of config changes over a preset's configuration (``--preset``,
``--set NAME YAML_VALUE``, repeated); without any, the first one stated in
docs/benchmarks.md: stop after 10 epochs without a decrease of at least 1% of
the best loss.  Each (held-out type, seed) trains the paper configuration with
the candidate's changes, one thread, scored as the small-data study scores
(``study.evaluate_prediction_levers``, the paper's prediction); rows are
appended to ``benchmarks/results/stopping.csv`` under the candidate's name.

The verdict, stated before any candidate run (docs/benchmarks.md):

- *no worse*: for each of the four R², the mean over the (type, seed) runs of
  candidate minus converged run of the same preset (the small-data study's
  rows of that training and prediction, ``CONVERGED``: the same configuration
  and seeds, patience 25, up to 100 epochs) is at least minus half the
  converged runs' seed sd (pooled over types);
- *faster*: on every held-out type, the candidate's mean training time is
  below the reference's (``../shared/reference/results.csv``: epochs x s/epoch).

Both must hold on all 7 types x 3 seeds before the rule may become a default.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from scgen_ablation.record import Record, pending
from scgen_ablation.comparison import reference_runs
from scgen_ablation.planning import UsageError, parse_parameters
from scgen_ablation.data import holdable_types_of
from scgen_ablation.study_record import study_config

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
OUT = RESULTS / "stopping.csv"
# each preset's converged runs in the small-data study: (CSV, lever, prediction)
CONVERGED = {"paper": (RESULTS / "small_data_prediction.csv", "paper", None),
             "kang_picks": (RESULTS / "small_data_training.csv", "ReLU output",
                             "paired delta + residual decoding")}
R2 = ["r2_mean_all", "r2_mean_top100", "r2_var_all", "r2_var_top100"]


FIRST = {"early_stopping_min_delta": 0.01, "early_stopping_patience": 10}


def candidate_of(pairs) -> dict:
    return parse_parameters(pairs) if pairs else dict(FIRST)


def rule_name(changes: dict, preset: str = "paper") -> str:
    rule = ", ".join(f"{k}={v}" for k, v in sorted(changes.items()))
    return rule if preset == "paper" else f"{preset}: {rule}"


def converged_runs(preset: str) -> pd.DataFrame:
    csv, lever, prediction = CONVERGED[preset]
    rows = pd.read_csv(csv)
    rows = rows[rows["lever"] == lever]
    return rows if prediction is None else rows[rows["prediction"] == prediction]


def run(args) -> int:
    from scgen_ablation import study
    from scgen_ablation.data import load

    changes = candidate_of(args.set)
    rule = rule_name(changes, args.preset)
    record = Record(args.out, key=["rule", "cell_type", "seed"], leading=[])
    planned = [{"rule": rule, "cell_type": cell_type, "seed": seed} for seed in args.seeds
               for cell_type in args.cell_types or holdable_types_of("kang")]
    adata = load("kang")
    for todo in pending(planned, record.read(), record.key):
        cell_type, seed = todo["cell_type"], todo["seed"]
        # as the study's converged runs were made (the paper's schedule), then the rule
        config = study_config(cell_type, seed, 100, args.preset).replace(
            **changes, num_threads=args.threads)
        row = study.evaluate_prediction_levers(adata, config, levers={"paper": {}})[0]
        row = {"rule": rule, **{k: v for k, v in row.items() if k not in ("lever", "kind")}}
        record.append([row])  # under a lock: several processes may share --out
        print(f"{cell_type}, seed {seed}: {row['epochs_run']:.0f} epochs, "
              f"{row['train_seconds']:.0f} s, r2_mean_all {row['r2_mean_all']:.3f}", flush=True)
    return 0


def verdict(candidate: pd.DataFrame, converged: pd.DataFrame, reference: pd.DataFrame):
    """(per-type table, per-metric table, passed) as the module docstring states the rule."""
    key = ["cell_type", "seed"]
    paired = candidate.merge(converged, on=key, suffixes=("", "_converged"))
    reference = reference.assign(train_seconds=reference["epochs"] * reference["s_per_epoch"])
    per_type = pd.DataFrame({
        "runs": paired.groupby("cell_type").size(),
        "epochs: rule": paired.groupby("cell_type")["epochs_run"].mean(),
        "epochs: converged": paired.groupby("cell_type")["epochs_run_converged"].mean(),
        "epochs: reference": reference.groupby("cell_type")["epochs"].mean(),
        "seconds: rule": paired.groupby("cell_type")["train_seconds"].mean(),
        "seconds: converged": paired.groupby("cell_type")["train_seconds_converged"].mean(),
        "seconds: reference": reference.groupby("cell_type")["train_seconds"].mean(),
        **{f"{m}: rule": paired.groupby("cell_type")[m].mean() for m in R2[:2]},
        **{f"{m}: converged": paired.groupby("cell_type")[f"{m}_converged"].mean() for m in R2[:2]},
    }).loc[lambda t: t["runs"] > 0]
    per_type["faster"] = per_type["seconds: rule"] < per_type["seconds: reference"]
    rows = []
    for metric in R2:
        difference = paired[metric] - paired[f"{metric}_converged"]
        seed_sd = float(np.sqrt(converged.groupby("cell_type")[metric].var().mean()))
        rows.append({"metric": metric, "rule": paired[metric].mean(),
                     "converged": paired[f"{metric}_converged"].mean(),
                     "mean difference": difference.mean(), "allowed": -seed_sd / 2,
                     "no worse": difference.mean() >= -seed_sd / 2})
    per_metric = pd.DataFrame(rows).set_index("metric")
    complete = len(paired) == len(converged)  # every converged run has its candidate
    passed = complete and per_metric["no worse"].all() and per_type["faster"].all()
    return per_type, per_metric, passed


def report(args) -> int:
    rule = rule_name(candidate_of(args.set), args.preset)
    candidate = pd.read_csv(args.out)
    candidate = candidate[candidate["rule"] == rule]
    converged = converged_runs(args.preset)
    per_type, per_metric, passed = verdict(candidate, converged, reference_runs())
    print(f"rule: {rule}; {len(candidate)} of {len(converged)} runs made\n")
    print(per_type.round(3).to_markdown(), "\n")
    print(per_metric.round(4).to_markdown(), "\n")
    print("PASSED: may become the default" if passed else
          "NOT PASSED" + ("" if len(candidate) == len(converged) else " (runs missing)"))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="paper", choices=sorted(CONVERGED))
    parser.add_argument("--set", nargs=2, action="append", default=[],
                        metavar=("NAME", "YAML_VALUE"), help="a config change of the candidate")
    parser.add_argument("--cell-types", nargs="+", default=None,
                        help="default: every Kang type the hold-out rule allows")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--report", action="store_true", help="train nothing: the verdict")
    args = parser.parse_args(argv)
    try:
        candidate_of(args.set)
    except UsageError as error:
        parser.error(str(error).replace("-p ", "--set "))
    return report(args) if args.report else run(args)


if __name__ == "__main__":
    sys.exit(main())
