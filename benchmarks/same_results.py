"""Do two MLflow stores hold the same results, run for run? (a refactor's before/after check)

    python benchmarks/same_results.py BEFORE_STORE AFTER_STORE [--rename OLD=NEW ...]

Each store is a tracking URI or a folder holding ``mlflow.db``. Result runs
(tag ``level=result``) are matched by stage, variant, held-out type and seed;
every metric they share is compared (timings left out). ``--rename`` maps a
variant name of the first store to the second's (e.g. a preset renamed).
Exit 0 when every matched metric is equal and no run is unmatched.

How the check of a refactor is made: the same profile through each commit's
code, each into its own store and training store, e.g.

    git worktree add /tmp/before <commit>
    (cd /tmp/before && PYTHONPATH=/tmp/before/src SCGEN_TRAINING_STORE=/tmp/t-before \\
        $PWD/.venv/bin/python -m scgen_ablation.runner --profile quick -p epochs 2 \\
        -p num_threads 1 --tracking-uri sqlite:////tmp/before-mlruns/mlflow.db)
    # the same from the working tree into /tmp/after-mlruns, then
    python benchmarks/same_results.py /tmp/before-mlruns /tmp/after-mlruns
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from scgen_ablation import tracking

NOT_COMPARED = ("seconds", "time")  # where and how fast a run happened may differ


def results(store: str, rename: dict[str, str]) -> dict[tuple, dict[str, float]]:
    uri = store if "://" in store else tracking.store_uri(Path(store))
    client = MlflowClient(uri)
    found = {}
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id], "tags.level = 'result'",
                                      max_results=50000):
            tags = run.data.tags
            variant = tags.get("variant", "")
            for old, new in rename.items():
                variant = variant.replace(old, new)
            key = (experiment.name, tags.get("stage_name"), variant,
                   tags.get("held_out_cell_type"), tags.get("seed"))
            if key in found:
                raise SystemExit(f"{store}: two result runs for {key}")
            found[key] = {k: v for k, v in run.data.metrics.items()
                          if not any(word in k for word in NOT_COMPARED)}
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rename", nargs="*", default=[], metavar="OLD=NEW")
    args = parser.parse_args(argv)
    rename = dict(pair.split("=", 1) for pair in args.rename)
    before, after = results(args.before, rename), results(args.after, {})
    unmatched = sorted(set(before) ^ set(after))
    compared, differ = 0, []
    for key in sorted(set(before) & set(after)):
        shared = set(before[key]) & set(after[key])
        compared += len(shared)
        largest = max((abs(before[key][m] - after[key][m]) for m in shared), default=0.0)
        if largest > 0 or set(before[key]) != set(after[key]):
            differ.append((key, largest))
    print(f"result runs: {len(before)} before, {len(after)} after, {len(unmatched)} unmatched; "
          f"{compared} metrics compared, {len(differ)} runs differ")
    for key in unmatched[:10]:
        print("  unmatched:", key)
    for key, largest in differ[:10]:
        print(f"  differs: {key} (largest difference {largest:g})")
    return 0 if not unmatched and not differ else 1


if __name__ == "__main__":
    sys.exit(main())
