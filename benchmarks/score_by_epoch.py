"""How a prediction's scores move as one training goes on: every ``--every`` epochs, scored.

    python benchmarks/score_by_epoch.py --cell-type CD4T --seed 0 --every 5
    python benchmarks/score_by_epoch.py --figure docs/figures/score_by_epoch.png   # plot the CSV

Trains the paper configuration (stage 06's, as the small-data study does; one
thread; ``--preset kang_picks`` for that preset's, on the paper's schedule as the
study trained it) once, keeping a checkpoint every ``--every`` epochs, then scores each
checkpoint as the study scores a model (R², the paper's prediction) and
appends one row per checkpoint to ``benchmarks/results/score_by_epoch.csv``:
setting (``--set NAME YAML_VALUE`` changes over the paper configuration),
epoch, validation loss, training seconds so far, the four R².  A stopping rule
that stops at epoch e gets exactly the checkpoint at e (training is the same
up to there), so this says what any rule would score, for one run.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parent / "results" / "score_by_epoch.csv"
R2 = ["r2_mean_all", "r2_mean_top100", "r2_var_all", "r2_var_top100"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="paper", help="the preset the changes apply to")
    parser.add_argument("--cell-type", default="CD4T")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", nargs=2, action="append", default=[],
                        metavar=("NAME", "YAML_VALUE"), help="a config change over the paper's")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--figure", type=Path, default=None,
                        help="train nothing: plot the CSV's runs to this file")
    args = parser.parse_args(argv)
    if args.figure:
        return figure(pd.read_csv(args.out), args.figure)

    from scgen_ablation.data import load
    from scgen_ablation.experiment import assess, prepare
    from scgen_ablation.model import TrainedModel
    from scgen_ablation.study_record import study_config
    from scgen_ablation.training import train

    from scgen_ablation.planning import UsageError, parse_parameters
    from scgen_ablation.record import Record

    try:
        changes = parse_parameters(args.set)
    except UsageError as error:
        parser.error(str(error).replace("-p ", "--set "))
    setting = ", ".join(f"{k}={v}" for k, v in sorted({**changes, "epochs": args.epochs}.items()))
    if args.preset != "paper":
        setting = f"{args.preset}: {setting}"
    try:  # as the small-data study trained the preset (the paper's schedule)
        config = study_config(args.cell_type, args.seed, args.epochs, args.preset)
    except KeyError as error:
        parser.error(str(error))
    config = config.replace(**{**changes, "epochs": args.epochs}, checkpoint_every=args.every,
                            num_threads=args.threads)
    adata = load("kang")
    split, degs = prepare(adata, config)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        model = train(split.train, config, checkpoint_path=Path(folder) / "epoch-{epoch}.pt")
        seconds = pd.Series([r["seconds"] for r in model.history]).cumsum()
        for path in sorted(Path(folder).glob("epoch-*.pt"), key=lambda p: int(p.stem[6:])):
            epoch = int(path.stem[6:])
            scores = assess(TrainedModel.load(path), split, degs, config).metrics
            rows.append({"setting": setting, "cell_type": args.cell_type, "seed": args.seed,
                         "epoch": epoch,
                         "val_loss": model.history[epoch - 1]["val_loss"],
                         "train_seconds": seconds[epoch - 1], **{m: scores[m] for m in R2}})
            print(f"epoch {epoch:3d}: " + ", ".join(f"{m} {scores[m]:.3f}" for m in R2), flush=True)
    # the one record's writer: a rerun of the same run replaces its rows
    Record(args.out, key=["setting", "cell_type", "seed", "epoch"], leading=[]).append(rows)
    return 0


def figure(table: pd.DataFrame, path: Path) -> int:
    """Each R² against training time, one line per (setting, type, seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = table.groupby(["setting", "cell_type", "seed"]).ngroups
    legend = 0.25 * ((runs + 1) // 2)  # inches: two legend entries a row
    fig, axes = plt.subplots(1, len(R2), figsize=(4 * len(R2), 3.4 + legend), sharex=True)
    for (setting, cell_type, seed), run in table.groupby(["setting", "cell_type", "seed"]):
        for ax, metric in zip(axes, R2):
            ax.plot(run["epoch"], run[metric], marker="o", ms=3,
                    label=f"{setting} ({cell_type}, seed {seed})")
    for ax, metric in zip(axes, R2):
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8)
    fig.suptitle("What a prediction scores at each epoch of one training")
    fig.tight_layout(rect=(0, (legend + 0.2) / (3.4 + legend), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
