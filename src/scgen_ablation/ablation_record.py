"""The converged ablation's record: every stage and variant of a profile, scored, kept as a CSV.

    python -m scgen_ablation.ablation_record --profile full --jobs 12      # what is missing
    python -m scgen_ablation.ablation_record --import-csv rows.csv          # rows made elsewhere
    python -m scgen_ablation.ablation_record --report --doc docs/ablation.md README.md

The rows are what the profile's notebooks would log as result runs: one per
(stage, variant, held-out type, seed), planned exactly as the runner plans
them (:func:`planning.plan`, :meth:`planning.Job.variant_configs`).  They are
grouped by training key: each unique training is trained once (or loaded from
the training store) and every row that needs it is scored on it, in one
process.  Rows are appended to ``benchmarks/results/ablation_full.csv`` as
each training finishes, so an interrupted run resumes where it stopped, and
rows made on another machine (``--out`` there, ``--import-csv`` here) join
the same record.  Each row is also logged as an MLflow result run unless
``--no-mlflow``.  ``--report`` rebuilds the tables and figures from the CSV
alone (:mod:`.reports`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

from .record import KEY, META, Record, check_rows, pending, read_csv, versioned
from .paths import PROJECT_ROOT

RESULTS_DIR = PROJECT_ROOT / "benchmarks" / "results"
RECORD = RESULTS_DIR / "ablation_full.csv"
# the docs whose generated blocks the record's report writes (--report alone rewrites them all)
REPORTED_DOCS = ("docs/ablation.md", "docs/metrics.md", "docs/datasets.md", "docs/beyond.md",
                 "README.md")


def wanted(profile: str, stages=None, profiles=None, parameters=None) -> list[dict]:
    """Every row the profile makes: its key, training key and config."""
    from .planning import plan, with_checksums
    from .prediction import PREDICTION_VERSION
    from .tracking import experiment_for

    jobs = with_checksums(plan(profile, stages, profiles_path=profiles,
                               extra_parameters=parameters or {}))
    items = []
    for job in jobs:
        preset_name = job.parameters.get("preset_name") or "paper"
        for variant, config in job.variant_configs():
            if preset_name != "paper" and variant != preset_name:  # e.g. -p preset_name recommended
                variant = f"{variant} ({preset_name})"
            items.append({"dataset": experiment_for(config.dataset),
                          "stage": job.stage, "variant": variant,
                          "held_out_cell_type": config.held_out_cell_type, "seed": config.seed,
                          "training_key": config.training_key(job.data_sha256),
                          "scoring_key": config.scoring_key(),
                          "prediction_version": PREDICTION_VERSION,
                          "data_sha256": job.data_sha256, "config": config.to_dict()})
    return items


# what made a row: the training, the prediction and evaluation fields it was scored with,
# and the version of the prediction code (prediction.PREDICTION_VERSION); for each, what a
# row made by another value was (an import's error names it)
STALE_BECAUSE = {
    "training_key": "made by another training than the planned one (stale, or other data)",
    "scoring_key": "scored with other prediction or evaluation fields than planned "
                   "(scoring_key; stale, or missing)",
    "prediction_version": "scored on another prediction version than this code's "
                          "(a row without the column is version 1)",
}
MADE_BY = list(STALE_BECAUSE)


def carried_forward(done: pd.DataFrame, planned: dict[tuple, dict]) -> pd.DataFrame:
    """The rows of ``done`` scored on an older prediction version than this code's that no
    later version changed (prediction.current_version: each version names the configs
    whose prediction it changed), made by the planned training and scoring, with their
    version set to this code's: their numbers are what this code scores. Only those rows;
    a version that changed every prediction (version 2) carries none forward."""
    from .config import ScGenConfig
    from .prediction import PREDICTION_VERSION, current_version

    made = versioned(done)
    if not len(made):
        return made
    keep = []
    for row in made.to_dict("records"):
        item = planned.get(tuple(row[k] for k in KEY))
        keep.append(item is not None and row["prediction_version"] < PREDICTION_VERSION
                    and all(str(row.get(k)) == str(item[k]) for k in ("training_key", "scoring_key"))
                    and current_version(row["prediction_version"],
                                        ScGenConfig.from_dict(item["config"])) == PREDICTION_VERSION)
    return made[keep].assign(prediction_version=PREDICTION_VERSION)


def stale(items: list[dict], done: pd.DataFrame) -> list[dict]:
    """The items recorded in ``done`` by another training, scoring or prediction version than
    planned now (``MADE_BY``): a row holds only for what it was made with (a changed
    config, data or prediction code makes it stale; a row from before a column is stale)."""
    missing = {id(item) for item in pending(items, done, KEY)}  # not recorded at all
    return [item for item in pending(items, versioned(done), KEY, made_by=MADE_BY)
            if id(item) not in missing]


def twins(items: list[dict], done: pd.DataFrame) -> list[dict]:
    """The pending rows that ``done`` already holds under another name: a scored row of the
    same training, scoring and prediction version (04's balanced delta is 05's paper row,
    03 at beta 1 is 02). Each is that row with the planned key: what scoring the same
    training the same way gives, with no training (the store would reuse it as well)."""
    from .prediction import PREDICTION_VERSION

    made = versioned(done)
    if not len(made) or any(c not in made for c in MADE_BY + ["status"]):
        return []
    made = made[(made["status"] == "ok") & (made["prediction_version"] == PREDICTION_VERSION)]
    by_made = {tuple(str(v) for v in row[MADE_BY]): row
               for _, row in made.drop_duplicates(MADE_BY).iterrows()}
    out = []
    for item in pending(items, made, KEY, made_by=MADE_BY):
        twin = by_made.get(tuple(str(item[c]) for c in MADE_BY))
        if twin is not None:
            out.append({**twin.dropna().to_dict(), **{k: item[k] for k in KEY}, "reused": True})
    return out


def pending_units(items: list[dict], done: pd.DataFrame) -> list[list[dict]]:
    """The rows missing from ``done`` or stale there (record.pending), grouped by training
    key (one training each), in plan order; a stale row is replaced when its new row is
    appended."""
    units: dict[str, list[dict]] = {}
    for item in pending(items, versioned(done), KEY, made_by=MADE_BY):
        units.setdefault(item["training_key"], []).append(item)
    return list(units.values())


def score_unit(unit: list[dict], store=None, threads: int | None = None) -> list[dict]:
    """Train (or load) the unit's one training, and score each of its rows on it.

    A training whose loss becomes NaN is recorded too (``status`` "diverged",
    no metrics): it is an outcome of that setting, and a rerun does not retry it.
    """
    from .config import ScGenConfig
    from .data import load_for
    from .experiment import score_variants
    from .model import pick_device
    from .store import TrainingStore

    configs = [ScGenConfig.from_dict(item["config"]) for item in unit]
    if threads is not None:  # held through DEG ranking and training (training.limit_threads)
        configs = [config.replace(num_threads=threads) for config in configs]
    first = configs[0]
    adata = load_for(first)
    try:
        model, results = score_variants(adata, first, dict(enumerate(configs)),
                                        store=store or TrainingStore(), train_if_unused=False)
    except FloatingPointError as error:  # a result too: this setting diverged here
        return [{**{k: item[k] for k in KEY}, **{k: item[k] for k in MADE_BY},
                 "device": pick_device(first.device).type, "status": "diverged",
                 "error": str(error)} for item in unit]
    rows = []  # identical configs (stage 02 = stage 03 at beta 1) are scored once
    for index, item in enumerate(unit):
        trained = {"device": model.trained_on, "train_seconds": model.train_seconds,
                   "reused": model.reused} if model else {"device": "cpu"}
        rows.append({**{k: item[k] for k in KEY}, **{k: item[k] for k in MADE_BY},
                     "status": "ok", **trained, **results[index].metrics})
    return rows


STUDY_TRAINING = RESULTS_DIR / "small_data_training.csv"


def from_study(items: list[dict], study_csv: Path = STUDY_TRAINING) -> list[dict]:
    """Rows of ``items`` the small-data study already made (``study_record``'s CSV).

    The study trains each of stage 06's training levers on every held-out type
    and seed, from stage 06's own configuration, and scores it under the paper's
    prediction.  A study row becomes a record row when its configuration makes
    the same training (training key, data checksum included) and the same
    prediction (every prediction field) as the row planned here; anything else
    in the study's CSV is left out.  The study kept no weights, so the metrics
    it did not compute (the field's, the bootstrap's) stay empty.
    """
    from .config import PREDICTION_FIELDS, ScGenConfig
    from .study import PREDICTION_LEVERS, TRAINING_LEVERS
    from .study_record import study_config

    study = versioned(pd.read_csv(study_csv))
    planned: dict[tuple, list[dict]] = {}
    for item in items:
        planned.setdefault((item["held_out_cell_type"], int(item["seed"])), []).append(item)
    rows = []
    for row in study.to_dict("records"):
        if row["lever"] not in TRAINING_LEVERS or row["prediction"] not in PREDICTION_LEVERS:
            continue
        config = (study_config(row["cell_type"], int(row["seed"]), epochs=100)
                  .replace(**TRAINING_LEVERS[row["lever"]])
                  .replace(**PREDICTION_LEVERS[row["prediction"]]))
        for item in planned.get((row["cell_type"], int(row["seed"])), []):
            mine = ScGenConfig.from_dict(item["config"])
            if (config.training_key(item["data_sha256"]) == item["training_key"]
                    and all(getattr(config, f) == getattr(mine, f) for f in PREDICTION_FIELDS)):
                metrics = {k: v for k, v in row.items() if k not in
                           ("cell_type", "seed", "lever", "kind", "prediction", "prediction_version")}
                rows.append({**{k: item[k] for k in KEY}, "training_key": item["training_key"],
                             "scoring_key": item["scoring_key"],
                             "prediction_version": int(row["prediction_version"]),
                             "status": "ok", "reused": False, "source": study_csv.name,
                             **metrics})
    return rows


def checked_import(rows: pd.DataFrame, planned: dict[tuple, dict], where: str) -> list[dict]:
    """The rows of an imported CSV, checked against the plan and the record's schema.

    Every row must name a planned (stage, variant, held-out type, seed) once, be made by
    the planned training, scoring and prediction version (``MADE_BY``), say its ``status``,
    and hold numbers in its metric columns; anything else is a ValueError naming the rows,
    and nothing is imported.
    """
    rows = check_rows(rows, where)
    for column in ("training_key", "status"):
        if column not in rows:
            raise ValueError(f"{where}: column {column!r} missing")
    keys = list(rows[KEY].itertuples(index=False, name=None))
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ValueError(f"{where}: {len(twice)} key(s) given more than once, e.g. {twice[:3]}")
    unplanned = [k for k in keys if k not in planned]
    if unplanned:
        raise ValueError(f"{where}: {len(unplanned)} row(s) are not in the plan (stage, variant, "
                         f"held-out type, seed), e.g. {unplanned[:3]}")
    made = versioned(rows)  # a row without prediction_version is version 1
    carried = carried_forward(made, planned)  # older versions that changed nothing here
    made.loc[carried.index, "prediction_version"] = carried["prediction_version"]
    for column, why in STALE_BECAUSE.items():
        values = made.get(column, pd.Series(None, index=rows.index, dtype=object))
        other = [k for k, value in zip(keys, values) if str(planned[k][column]) != str(value)]
        if other:
            raise ValueError(f"{where}: {len(other)} row(s) were {why}, e.g. {other[:3]}")
    known = set(KEY) | set(META) | {"data_sha256"}
    for column in rows.columns.difference(list(known)):
        values = rows[column].dropna()
        if len(values) and pd.to_numeric(values, errors="coerce").isna().any():
            raise ValueError(f"{where}: metric column {column!r} holds values that are not "
                             f"numbers, e.g. {list(values[pd.to_numeric(values, errors='coerce').isna()][:3])}")
    return made.to_dict("records")


def log_rows(rows: list[dict], items: dict, experiment: str | None,
             lock: threading.Lock) -> None:
    """Each row as an MLflow result run (tracking.result_run; tag source=ablation_record)."""
    from . import tracking
    from .config import ScGenConfig

    with lock:
        for row in rows:
            item = items.get(tuple(row[k] for k in KEY))
            with tracking.result_run(
                    row["stage"], row["variant"], row["held_out_cell_type"], row["seed"],
                    config=None if item is None else ScGenConfig.from_dict(item["config"]),
                    experiment=experiment or str(row["dataset"]),
                    tags={"source": "ablation_record", "training_key": row["training_key"],
                          "device": str(row.get("device", ""))}):
                tracking.log_row(row)


def record_key(row: dict) -> str:
    """A record row's identity in MLflow: its key and what made it (training, scoring and
    prediction version), so a row remade or rescored replaces its run."""
    return "|".join(str(row[k]) for k in KEY + MADE_BY)


def to_mlflow(table: pd.DataFrame, uri: str | None = None) -> int:
    """Each scored row of the record as a FINISHED result run in its dataset's experiment,
    once (tag ``record_key``: a rerun adds only rows it has not logged, and deletes the
    runs of rows the record no longer holds); returns how many it added. Only each
    dataset's rows of its latest prediction version, as in every table (rows of two
    versions are never compared); the version is a tag.

    The runs are named like the notebooks' result runs and tagged ``source=record``
    with the row's device and origin, so the MLflow UI compares the converged
    ladder beside the quick profile's runs (column ``source``); the comparison
    notebook leaves them out of its own tables.
    """
    import time as clock

    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from . import tracking
    from .data import DATASETS
    from .reports.common import latest

    table = latest(versioned(table))
    uri = tracking.tracking_uri(uri)
    client = MlflowClient(uri)
    made = 0
    for dataset, rows in table.groupby("dataset", sort=True):
        experiment_id = tracking.setup(uri, str(dataset))
        logged = tracking.retry(client.search_runs, [experiment_id], "tags.source = 'record'",
                                max_results=50000)
        for run in logged:  # one an interrupted load left unfinished is made again
            if run.info.status != "FINISHED":
                tracking.retry(client.delete_run, run.info.run_id)
        keys = {record_key(row): row for row in rows.to_dict("records")
                if row.get("status", "ok") == "ok"}
        have = set()
        for run in logged:
            if run.info.status != "FINISHED":
                continue
            if run.data.tags.get("record_key") in keys:
                have.add(run.data.tags["record_key"])
            else:  # a row the record no longer holds (remade, or renamed): the UI follows it
                tracking.retry(client.delete_run, run.info.run_id)
        sha = DATASETS[dataset].sha256 if dataset in DATASETS else ""
        for key, row in keys.items():
            if key in have:
                continue
            tags = {"level": "result", "source": "record", "record_key": key,
                    "record_origin": str(row.get("source") if pd.notna(row.get("source")) else "record"),
                    "profile": "full (converged record)", **tracking.stage_tags(row["stage"]),
                    "variant": row["variant"],
                    "held_out_cell_type": row["held_out_cell_type"], "seed": str(row["seed"]),
                    "training_key": row["training_key"], "device": str(row.get("device", "")),
                    "prediction_version": str(row["prediction_version"]), "data_sha256": sha}
            run = tracking.retry(client.create_run, experiment_id, tags=tags,
                                 run_name=tracking.result_name(
                                     row["stage"], row["variant"], row["held_out_cell_type"],
                                     row["seed"]))
            now = int(clock.time() * 1000)
            metrics = [Metric(k, round(float(v), 4), now, 0) for k, v in row.items()
                       if k not in KEY and k not in META and isinstance(v, (int, float))
                       and not isinstance(v, bool) and pd.notna(v)]
            params = [Param(k, str(row[k])) for k in ("held_out_cell_type", "seed", "epochs_run")
                      if k in row and pd.notna(row[k])]
            tracking.retry(client.log_batch, run.info.run_id, metrics=metrics, params=params,
                           tags=[RunTag("mlflow.runName", run.info.run_name)])
            tracking.retry(client.set_terminated, run.info.run_id, "FINISHED")
            made += 1
    return made


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="full")
    parser.add_argument("--profiles", type=Path, default=None)
    parser.add_argument("--stages", nargs="*", default=None)
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "YAML_VALUE"), help="as runner -p")
    parser.add_argument("--dataset", default=None,
                        help="the dataset (data.DATASETS name or .h5ad path): plans as -p dataset "
                             "NAME; with --report, whose rows (default: kang)")
    parser.add_argument("--out", type=Path, default=RECORD)
    parser.add_argument("--jobs", type=int, default=1,
                        help="trainings at a time, each in its own process (say 12 on one GPU)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training")
    parser.add_argument("--stop-after", type=float, default=None, metavar="SECONDS",
                        help="start no new training after this long (what started finishes)")
    parser.add_argument("--experiment", default=None,
                        help="MLflow experiment of the result runs (default: each row's dataset)")
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--store", type=Path, default=None, help="the training store's folder")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the number of rows and trainings still to make")
    parser.add_argument("--carry-forward", action="store_true",
                        help="make nothing: only set the prediction version of the planned rows "
                             "that no later version changed to this code's (every run does this "
                             "first)")
    parser.add_argument("--import-csv", type=Path, default=None,
                        help="train nothing: add this CSV's rows that the record lacks or "
                             "holds only stale (they replace those)")
    parser.add_argument("--from-study", action="store_true",
                        help="train nothing: add the rows the small-data study already "
                             f"made ({STUDY_TRAINING.name}: its training levers)")
    parser.add_argument("--unit", type=Path, default=None,
                        help="score one training's rows, as written by --write-units")
    parser.add_argument("--write-units", type=Path, default=None, metavar="FOLDER",
                        help="train nothing: write each pending training's rows as "
                             "FOLDER/NNN.json, for --unit on a machine without MLflow "
                             "(benchmarks/device_record.sh)")
    parser.add_argument("--to-mlflow", action="store_true",
                        help="train nothing: log every record row as an MLflow result run "
                             "(tag source=record), once; then `make ui` compares them")
    parser.add_argument("--tracking-uri", default=None, help="with --to-mlflow (default: mlruns/)")
    parser.add_argument("--report", action="store_true",
                        help="train nothing: tables and figures from the CSV")
    parser.add_argument("--figures", type=Path, default=PROJECT_ROOT / "docs" / "figures")
    parser.add_argument("--doc", type=Path, nargs="*", default=None,
                        help="with --report: rewrite these markdown files' generated blocks "
                             "(default: every doc that holds them, REPORTED_DOCS)")
    args = parser.parse_args(argv)
    if args.store is not None:
        from .store import ENVIRONMENT_VARIABLE
        os.environ[ENVIRONMENT_VARIABLE] = str(args.store.resolve())
    if args.report:
        from .reports import write_report
        from .tracking import experiment_for
        docs = [PROJECT_ROOT / name for name in REPORTED_DOCS] if args.doc is None else args.doc
        return write_report(args.out, args.figures, docs,
                            dataset=experiment_for(args.dataset or "kang"))

    record = Record(args.out)
    if args.to_mlflow:
        from .reports.common import load
        made = to_mlflow(load(args.out), args.tracking_uri)
        print(f"{made} record rows logged as MLflow result runs (tag source=record)")
        return 0
    if args.unit:  # one training's rows, in this process (the pool's workers)
        record.append(score_unit(json.loads(args.unit.read_text()), threads=args.threads))
        return 0

    from .planning import UsageError, parse_parameters

    try:
        parameters = parse_parameters(args.parameter)
        if args.dataset is not None:
            if "dataset" in parameters:
                raise UsageError("give the dataset once: --dataset or -p dataset")
            parameters["dataset"] = args.dataset
        items = wanted(args.profile, args.stages, args.profiles, parameters)
        if args.import_csv and "preset_name" not in parameters:
            # a file of rows may hold every preset's (benchmarks/dataset_study.sh makes each
            # by -p preset_name NAME): plan each, so one import takes the whole file
            from .config import PRESETS
            for name in sorted(set(PRESETS) - {"paper"}):
                items += wanted(args.profile, args.stages, args.profiles,
                                {**parameters, "preset_name": name})
    except UsageError as error:
        print(f"ablation_record: {error}", file=sys.stderr)
        return 2
    by_key = {tuple(item[k] for k in KEY): item for item in items}
    lock = threading.Lock()
    if args.import_csv or args.from_study:
        try:
            rows = (from_study(items) if args.from_study
                    else checked_import(read_csv(args.import_csv), by_key, str(args.import_csv)))
            # what the record lacks; with --import-csv also what it holds only stale (another
            # training, scoring or prediction version): the imported row, checked current by
            # checked_import, replaces it. The study's rows are not checked so: missing only.
            wanted_keys = {tuple(item[k] for k in KEY) for item in
                           pending(items, versioned(record.read()), KEY,
                                   made_by=None if args.from_study else MADE_BY)}
        except ValueError as error:
            print(f"ablation_record: {error}; nothing imported", file=sys.stderr)
            return 2
        new = [r for r in rows if tuple(r[k] for k in KEY) in wanted_keys]
        record.append(new)
        if not args.no_mlflow:
            log_rows(new, by_key, args.experiment, lock)
        print(f"{len(new)} rows imported into {args.out}")
        return 0
    try:
        done = versioned(record.read())
    except ValueError as error:
        print(f"ablation_record: {error}", file=sys.stderr)
        return 2
    carried = carried_forward(done, by_key)
    if len(carried):
        done.loc[carried.index, "prediction_version"] = carried["prediction_version"]
        print(f"{len(carried)} rows carried forward to prediction version "
              f"{carried['prediction_version'].iloc[0]}: no later version changed their "
              "prediction" + (" (not written: a dry run)" if args.dry_run else ""), flush=True)
        if not args.dry_run:
            record.append(carried.to_dict("records"))
    if args.carry_forward:
        return 0
    copies = twins(items, done)
    if copies:
        print(f"{len(copies)} rows copied from rows of the same training, scoring and prediction "
              "version already in the record (no training)"
              + (" (not written: a dry run)" if args.dry_run else ""), flush=True)
        if not args.dry_run:
            record.append(copies)
        done = (pd.concat([done, versioned(pd.DataFrame(copies))], ignore_index=True)
                .drop_duplicates(KEY, keep="last"))
    units = pending_units(items, done)
    rows_to_make = sum(len(u) for u in units)
    old = len(stale(items, done))
    print(f"{len(items)} rows in profile {args.profile!r}; {rows_to_make} to make from "
          f"{len(units)} trainings, {args.jobs} at a time"
          + (f" ({old} of them stale: made by another training or scoring config, or on "
             "another prediction version)" if old else ""), flush=True)
    if args.write_units:
        args.write_units.mkdir(parents=True, exist_ok=True)
        for index, unit in enumerate(units):
            (args.write_units / f"{index:03d}.json").write_text(json.dumps(unit, default=str))
        print(f"{len(units)} units written to {args.write_units}")
        return 0
    if args.dry_run or not units:
        return 0
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="ablation_record_"))
    finished = []

    def run(indexed):
        index, unit = indexed
        if args.stop_after is not None and time.perf_counter() - started > args.stop_after:
            return None
        label = f"{unit[0]['stage']} {unit[0]['variant']}, {unit[0]['held_out_cell_type']}, " \
                f"seed {unit[0]['seed']} ({len(unit)} rows)"
        if args.jobs == 1:
            rows = score_unit(unit, threads=args.threads)
        else:
            spec, out = work / f"{index}.json", work / f"{index}.csv"
            spec.write_text(json.dumps(unit, default=str))
            command = [sys.executable, "-m", "scgen_ablation.ablation_record", "--unit", str(spec),
                       "--out", str(out), "--threads", str(args.threads)]
            processes.run(command, out.with_suffix(".log"))
            if not out.exists():
                print(f"FAILED: {label}: see {out.with_suffix('.log')}", flush=True)
                return None
            rows = pd.read_csv(out).to_dict("records")
        record.append(rows)
        if not args.no_mlflow:
            log_rows(rows, by_key, args.experiment, lock)
        finished.append(len(rows))
        first = rows[0]
        trained = (f"{first['train_seconds']:.0f} s on {first['device']}"
                   if pd.notna(first.get("train_seconds", float("nan"))) else "no training")
        outcome = (f"{trained}, r2_mean_all {first['r2_mean_all']:.3f}"
                   if first.get("status") == "ok"
                   else f"{first.get('status')}: {first.get('error')}")
        print(f"[{len(finished)}/{len(units)}] {label}: {outcome} "
              f"({time.perf_counter() - started:.0f} s elapsed)", flush=True)
        return rows

    from .pools import Processes, run_pool

    processes = Processes()
    if args.jobs == 1:  # here, in this thread: Ctrl-C and SIGTERM stop it at once
        for indexed in enumerate(units):
            run(indexed)
    else:
        run_pool(list(enumerate(units)), run, args.jobs, processes)
    print(f"{sum(finished)} rows from {len(finished)} trainings appended to {args.out} "
          f"in {time.perf_counter() - started:.0f} s; logs in {work}")
    return 0 if len(finished) == len(units) else 1


if __name__ == "__main__":
    raise SystemExit(main())
