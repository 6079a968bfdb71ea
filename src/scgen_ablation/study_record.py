"""The small-data study's record: train the levers, append their scores, log them.

    python -m scgen_ablation.study_record --threads 1                  # step 1: prediction levers
    python -m scgen_ablation.study_record --levers training --seeds 0  # step 2: training levers
    python -m scgen_ablation.study_record --levers training --jobs 12  # 12 trainings at a time (a GPU)
    python -m scgen_ablation.study_record --report --doc docs/small_data.md README.md

Each (cell type, seed) trains stage 06's configuration (the ``paper`` preset
and ``ablation/stages/06_small_data.yaml``) once and scores every prediction
lever on it; ``--levers training`` trains one model per training lever instead
and scores it under the paper's prediction and under step 1's pick.  The
levers are the stage file's ``variants``.  Rows are appended to the committed
CSVs in ``benchmarks/results/`` as each training finishes (re-running skips
what is there), and every row is also an MLflow result run of stage 06.
With ``--jobs N`` the trainings run as processes through the runner's one
executor (:func:`pools.run_pool`): they die with this process and stop on
Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

from . import study
from .paths import PROJECT_ROOT

RESULTS_DIR = PROJECT_ROOT / "benchmarks" / "results"
PREDICTION_CSV = RESULTS_DIR / "small_data_prediction.csv"
TRAINING_CSV = RESULTS_DIR / "small_data_training.csv"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell-types", nargs="*", default=None,
                        help="default: every Kang type the hold-out rule allows")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--levers", choices=["prediction", "training"], default="prediction")
    parser.add_argument("--only", nargs="*", default=None, help="only these training levers")
    parser.add_argument("--out", type=Path, default=None,
                        help="CSV (default: benchmarks/results/small_data_<levers>.csv)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--jobs", type=int, default=1,
                        help="trainings at a time, each in its own process (say 12 on one GPU)")
    parser.add_argument("--experiment", default="kang")
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--import-csv", type=Path, default=None,
                        help="train nothing: append this CSV's rows (made with --out and "
                             "--no-mlflow on another machine) that --out lacks, and log them")
    parser.add_argument("--figures", type=Path, default=PROJECT_ROOT / "docs" / "figures",
                        help="where --report draws its figures")
    parser.add_argument("--doc", type=Path, nargs="*", default=(),
                        help="with --report: rewrite these markdown files' generated blocks "
                             "(docs/small_data.md README.md)")
    parser.add_argument("--report", action="store_true",
                        help="train nothing: print the tables of docs/small_data.md from the "
                             "CSVs and draw its figures into docs/figures/")
    args = parser.parse_args(argv)
    if args.report:
        from .reports.small_data import write_report

        return write_report(PREDICTION_CSV, TRAINING_CSV, args.figures, args.doc)

    if not args.cell_types:
        from .data import holdable_types_of

        args.cell_types = holdable_types_of("kang")
    unknown = sorted(set(args.only or ()) - set(study.TRAINING_LEVERS))
    if unknown:
        parser.error(f"unknown training lever(s) {unknown}; known: {list(study.TRAINING_LEVERS)}")
    out = args.out or RESULTS_DIR / f"small_data_{args.levers}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    done = pd.read_csv(out) if out.exists() else pd.DataFrame(columns=["cell_type", "seed", "lever"])
    predictions = ("paper",)
    if args.levers == "training":  # scored under the paper's prediction and under step 1's pick
        step1 = PREDICTION_CSV
        if not step1.exists():
            parser.error(f"{step1} is missing: run step 1 (--levers prediction) first")
        predictions = ("paper", study.select_lever(study.step1_scores(step1)))
    if args.import_csv:
        finished = imported(pd.read_csv(args.import_csv), done)
    elif args.jobs > 1:
        finished = in_subprocesses(pending(done, args, predictions), args)
    else:
        finished = in_process(pending(done, args, predictions), args, predictions)
    from .record import Record

    new = 0
    for seed, cell_type, rows in finished:
        table = pd.DataFrame(rows)
        # the record's one writer: under its lock, rewritten atomically, a row's key once
        key = [c for c in ("cell_type", "seed", "lever", "kind", "prediction") if c in table]
        Record(out, key=key, leading=[]).append(rows)
        new += len(table)
        if not args.no_mlflow:
            log(args.experiment, rows, cell_type, seed, args.epochs)
        best = table.set_index([c for c in ("lever", "prediction") if c in table])[
            list(study.RANKED_METRICS)].round(3)
        print(f"--- {cell_type} seed {seed} ({rows[0]['train_seconds']:.0f} s training)\n{best}",
              flush=True)
    print(f"{new} new rows appended to {out}")
    return 0


def study_config(cell_type: str, seed: int, epochs: int, preset_name: str = "paper"):
    """Stage 06's configuration (preset and stage file, as the runner builds it) on the
    paper's schedule, as the study trained every preset (batch 32, constant rate)."""
    from .config import PAPER_SCHEDULE
    from .stages import stage_config

    config = stage_config("06_small_data", preset_name=preset_name, parameters={
        "held_out_cell_type": cell_type, "seed": seed})
    return config.replace(**{**PAPER_SCHEDULE, "epochs": epochs})


def pending(done: pd.DataFrame, args, predictions) -> list[tuple]:
    """(seed, cell type, training lever or None) still to train (record.pending over the
    rows each would make): with --levers prediction one training per (cell type, seed)
    scores every prediction lever; a training lever is done once it is scored under
    every prediction; a row scored on an older prediction version (record.versioned) is
    made again."""
    from .prediction import PREDICTION_VERSION
    from .record import pending as missing, versioned

    done = versioned(done)
    units = {}
    for seed in args.seeds:
        for cell_type in args.cell_types:
            if args.levers == "prediction":
                units[(seed, cell_type, None)] = [
                    {"cell_type": cell_type, "seed": seed, "lever": lever}
                    for lever in study.PREDICTION_LEVERS]
                continue
            for lever in study.TRAINING_LEVERS:
                if args.only is None or lever in args.only:
                    units[(seed, cell_type, lever)] = [
                        {"cell_type": cell_type, "seed": seed, "lever": lever, "prediction": p}
                        for p in predictions]
    return [unit for unit, rows in units.items()
            if missing([{**row, "prediction_version": PREDICTION_VERSION} for row in rows],
                       done, list(rows[0]), made_by="prediction_version")]


def in_process(todo, args, predictions):
    """Train each pending run here, one after the other: (seed, cell type, rows)."""
    from .data import load

    adata = load("kang")
    for seed, cell_type, lever in todo:
        # held through DEG ranking and training (training.limit_threads)
        config = study_config(cell_type, seed, args.epochs).replace(num_threads=args.threads)
        if lever is None:
            yield seed, cell_type, study.evaluate_prediction_levers(adata, config)
        else:
            yield seed, cell_type, study.evaluate_training_lever(adata, config, lever,
                                                                 predictions=predictions)


def in_subprocesses(todo, args):
    """Train the pending runs ``args.jobs`` at a time, each in its own process of this
    module (one torch thread unless --threads), through the runner's executor; the
    rows of those that finished, once all have ended (the caller alone writes the CSV
    and MLflow).  A failed run is reported and skipped."""
    from .pools import Processes, run_pool

    work = Path(tempfile.mkdtemp(prefix="small_data_"))
    print(f"{len(todo)} trainings, {args.jobs} at a time; logs in {work}", flush=True)
    processes = Processes()

    def run(item):
        index, (seed, cell_type, lever) = item
        rows = work / f"{index}.csv"
        command = [sys.executable, "-m", "scgen_ablation.study_record", "--levers", args.levers,
                   "--seeds", str(seed), "--cell-types", cell_type, "--epochs", str(args.epochs),
                   "--no-mlflow", "--threads", str(args.threads or 1), "--out", str(rows)]
        processes.run(command + (["--only", lever] if lever else []), rows.with_suffix(".log"))
        if not rows.exists():
            print(f"FAILED: {lever or 'prediction levers'}, {cell_type}, seed {seed}: "
                  f"see {rows.with_suffix('.log')}", flush=True)
            return None
        return seed, cell_type, pd.read_csv(rows).to_dict("records")

    return [done for done in run_pool(list(enumerate(todo)), run, args.jobs, processes) if done]


def imported(rows: pd.DataFrame, done: pd.DataFrame):
    """Rows trained elsewhere, less those already done, grouped as a run yields them."""
    keys = [key for key in ("cell_type", "seed", "lever", "prediction") if key in rows]
    seen = set(done[keys].itertuples(index=False)) if set(keys) <= set(done) else set()
    rows = rows[[row not in seen for row in rows[keys].itertuples(index=False)]]
    for (cell_type, seed), group in rows.groupby(["cell_type", "seed"], sort=False):
        yield int(seed), cell_type, group.to_dict("records")


def log(experiment: str, rows: list[dict], cell_type: str, seed: int, epochs: int):
    """One (cell type, seed)'s rows as an MLflow run of stage 06, a child run per row."""
    from . import tracking  # tracking imports mlflow: only when logging

    name = tracking.stage_run_name("06_small_data", cell_type, seed)
    tracking.start(experiment=experiment, run_name=name, tags=tracking.stage_tags("06_small_data"))
    study.log_rows(rows, study_config(cell_type, seed, epochs))
    tracking.finish()


if __name__ == "__main__":
    raise SystemExit(main())
