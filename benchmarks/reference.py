"""This project's scGen against the authors' scGen: accuracy and speed, in one run.

    make reference-env                                  # once: .venv-reference (PyPI scgen 2.1.0)
    python benchmarks/reference.py --quick              # CD4T, seed 0, 5 epochs: a few minutes
    python benchmarks/reference.py                      # 7 cell types x 3 seeds, 100 epochs
    python benchmarks/reference.py --dataset haber      # any registered dataset (data.DATASETS)
    python benchmarks/reference.py --dataset haber --implementations reference   # the authors' only

For every held-out cell type and seed both implementations run as separate
processes on the same split with scGen's hyperparameters (batch 32, Adam 1e-3,
beta 5e-5, up to MAX_EPOCHS with early stopping patience 25), alternating which
goes first; both predictions are then scored here, by this project's metric
code, against the same truth cells and the same top-100 DEGs.
Every cell type the hold-out rule allows is held out (``--cell-types`` to choose);
a dataset's keys and labels go to both implementations, and a dataset kept as raw
counts is preprocessed once, here, and given to both as the same file.
Writes benchmarks/results/reference[_DATASET][_quick].csv, one row per run as it
finishes (a rerun skips the runs it holds), and prints both tables;
:func:`scgen_ablation.comparison.reference_runs` reads a dataset's reference rows there.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

import scgen_ablation as sa
from scgen_ablation import metrics
from scgen_ablation.data import DATASETS, dense, holdable_types_of, load_for

HERE = Path(__file__).resolve().parent
REFERENCE_PYTHON = HERE.parent / ".venv-reference" / "bin" / "python"
KEYS = ("condition_key", "cell_type_key", "control_label", "stimulated_label")


def run_one(which: str, cell_type: str, epochs: int, seed: int, data: Path, preset: str,
            threads: int | None = None, keys: dict | None = None) -> dict:
    with tempfile.TemporaryDirectory() as out:
        if which == "reference":
            command = [str(REFERENCE_PYTHON), str(HERE / "reference" / "run_reference.py")]
            extra = [json.dumps(keys or {})]
        else:
            command = [sys.executable, str(HERE / "reference" / "run_ours.py")]
            extra = [preset, json.dumps(keys or {})]
        env = dict(os.environ)
        if threads:  # both implementations read this when torch starts
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        done = subprocess.run([*command, cell_type, str(epochs), str(seed), out, str(data), *extra],
                              capture_output=True, text=True, env=env)
        if done.returncode:
            raise RuntimeError(f"{which} failed on {cell_type}/{seed}:\n{done.stderr[-3000:]}")
        timing = json.loads((Path(out) / "timing.json").read_text())
        timing["prediction"] = np.load(Path(out) / "prediction.npy")
        return timing


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="the dataset's first showcase type (Kang: CD4T), seed 0, 5 epochs")
    parser.add_argument("--dataset", default="kang", choices=sorted(DATASETS))
    parser.add_argument("--cell-types", nargs="*", default=None,
                        help="default: every type the hold-out rule allows")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--preset", default="paper", help="our configuration (a preset name, e.g. paper)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads for both")
    parser.add_argument("--implementations", nargs="+", default=["reference", "ours"],
                        choices=["reference", "ours"],
                        help="which to train (default both; the other's rows can be added later)")
    args = parser.parse_args(argv)
    dataset = DATASETS[args.dataset]
    if args.quick:
        args.cell_types, args.seeds, args.epochs = [dataset.showcase[0]], [0], 5
    if not REFERENCE_PYTHON.exists():
        parser.error(f"{REFERENCE_PYTHON} not found: run `make reference-env` first")
    name = "" if args.dataset == "kang" else f"_{args.dataset}"
    out = args.out or HERE / "results" / f"reference{name}{'_quick' if args.quick else ''}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    # round_trip: a rewrite leaves the rows it holds byte for byte
    rows = (pd.read_csv(out, float_precision="round_trip").to_dict("records") if out.exists()
            else [])
    done = {(r["implementation"], r["cell_type"], int(r["seed"])) for r in rows}

    base = sa.preset("paper", dataset=args.dataset, **dataset.config_fields())
    keys = {k: getattr(base, k) for k in KEYS}
    adata = load_for(base)  # preprocessed here when the file holds counts
    scratch = tempfile.TemporaryDirectory()
    data = Path(scratch.name) / "data.h5ad"  # the same matrix for both implementations
    # only what both need: the reference environment's older anndata cannot read the
    # preprocessing's uns (None values), e.g. kang_counts' log1p and HVG parameters
    ad.AnnData(X=adata.X, obs=adata.obs, var=adata.var).write_h5ad(data)
    for seed in args.seeds:
        for k, cell_type in enumerate(args.cell_types or holdable_types_of(args.dataset)):
            config = base.replace(held_out_cell_type=cell_type, seed=seed, preprocess=False)
            split, degs = sa.experiment.prepare(adata, config)
            index = metrics.gene_index(split.truth.var_names, degs)
            truth = dense(split.truth.X)
            order = ["reference", "ours"] if (seed + k) % 2 == 0 else ["ours", "reference"]
            for which in (w for w in order if w in args.implementations):
                if (which, cell_type, seed) in done:
                    continue
                timing = run_one(which, cell_type, args.epochs, seed, data, args.preset,
                                  args.threads, keys)
                assert sorted(timing.pop("obs_names")) == sorted(split.ctrl_target.obs_names)
                scores = metrics.score(timing.pop("prediction"), truth, index)
                rows.append({"implementation": which, "cell_type": cell_type, "seed": seed,
                             **timing, **scores})
                pd.DataFrame(rows).to_csv(out, index=False)  # each run kept as it ends
                print(f"{which:9s} {cell_type:12s} seed {seed}: "
                      f"{timing['s_per_epoch']:.2f} s/epoch x {timing['epochs']} epochs, "
                      f"R² mean {scores['r2_mean_all']:.3f} / top-100 {scores['r2_mean_top100']:.3f}, "
                      f"var {scores['r2_var_all']:.3f}", flush=True)
            baselines = metrics.baselines(split, config)
            for kind in ("control", "gene_arith"):
                if (kind, cell_type, seed) not in done:
                    rows.append({"implementation": kind, "cell_type": cell_type, "seed": seed,
                                 **metrics.score(baselines[kind], truth, index)})
            pd.DataFrame(rows).to_csv(out, index=False)

    table = pd.DataFrame(rows)
    accuracy = table.groupby(["cell_type", "implementation"])[list(metrics.METRICS)].agg(["mean", "std"])
    print("\nAccuracy (mean, sd over seeds)\n", accuracy.round(3).to_string())
    timed = table[table.implementation.isin(["ours", "reference"])]
    speed = timed.groupby("implementation")[["s_per_epoch", "epochs", "wall_seconds",
                                             "peak_rss_mib"]].mean()
    if {"reference", "ours"} <= set(speed.index):
        speed.loc["ratio reference / ours"] = speed.loc["reference"] / speed.loc["ours"]
    print("\nSpeed (mean over runs)\n", speed.round(2).to_string())
    print(f"\nrows written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
