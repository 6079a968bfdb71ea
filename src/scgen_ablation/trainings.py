"""Looking after the training store: what it holds, and pruning it.

    python -m scgen_ablation.trainings list
    python -m scgen_ablation.trainings prune --unused-by benchmarks/results/ablation_full.csv
    python -m scgen_ablation.trainings prune --older-than 30 --yes
    python -m scgen_ablation.trainings prune --bad --yes      # entries set aside as bad

Each entry is one training (``store.TrainingStore``), about 51 MB for the paper
network on Kang's 6,998 genes (twice that when the best validation epoch's
weights differ from the last's and are kept beside them).  Pruning says what it
would delete unless ``--yes``; a pruned training is simply made again when a
run needs it.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from .store import TrainingStore


def entries(store: TrainingStore) -> list[dict]:
    """One row per entry: key, size, age, what trained it (read from the file itself)."""
    rows = []
    for path in sorted(store.root.glob("*.pt")) if store.root.is_dir() else []:
        row = {"key": path.stem, "mb": path.stat().st_size / 1e6,
               "days": (time.time() - path.stat().st_mtime) / 86400}
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            config = payload.get("config", {})
            row.update(dataset=config.get("dataset"), held_out=config.get("held_out_cell_type"),
                       seed=config.get("seed"), epochs=len(payload.get("history", [])),
                       device=payload.get("device"), best_copy="best_state" in payload)
        except Exception as error:  # noqa: BLE001 - a bad entry is listed as such
            row.update(problem=f"{type(error).__name__}: {str(error)[:80]}")
        rows.append(row)
    return rows


def main(argv=None) -> int:
    import argparse
    import csv
    import sys

    import pandas as pd

    parser = argparse.ArgumentParser(
        prog="python -m scgen_ablation.trainings",
        description="List the training store, or prune it: by age, or the entries no record "
                    "uses (the records' training_key columns). Pruning asks for --yes.")
    parser.add_argument("command", choices=["list", "prune"])
    parser.add_argument("--store", type=Path, default=None,
                        help="the store's folder (default: $SCGEN_TRAINING_STORE, else "
                             "mlruns/trainings)")
    parser.add_argument("--older-than", type=float, default=None, metavar="DAYS")
    parser.add_argument("--unused-by", type=Path, nargs="+", default=None, metavar="CSV",
                        help="prune the entries none of these records names in training_key")
    parser.add_argument("--bad", action="store_true",
                        help="prune the entries set aside as bad (<key>.pt.bad-*)")
    parser.add_argument("--yes", action="store_true", help="delete (default: only say what)")
    args = parser.parse_args(argv)
    store = TrainingStore(args.store)
    rows = entries(store)
    if args.command == "list":
        table = pd.DataFrame(rows)
        if table.empty:
            print(f"{store.root}: no stored trainings")
            return 0
        with pd.option_context("display.width", 200, "display.max_rows", None):
            print(table.round(1).to_string(index=False))
        print(f"{len(table)} trainings, {table['mb'].sum():.0f} MB in {store.root} "
              f"({table['mb'].mean():.1f} MB each on average)")
        return 0
    if args.older_than is None and args.unused_by is None and not args.bad:
        parser.error("prune needs --older-than, --unused-by or --bad")
    doomed = [r for r in rows if args.older_than is None or r["days"] > args.older_than]
    if args.unused_by is not None:
        used = set()
        for record in args.unused_by:
            with open(record, newline="") as handle:
                reader = csv.DictReader(handle)
                if "training_key" not in (reader.fieldnames or []):
                    parser.error(f"{record} has no training_key column: it is not a record; "
                                 "nothing pruned")
                used |= {row["training_key"] for row in reader}
        doomed = [r for r in doomed if r["key"] not in used]
    chosen = args.older_than is not None or args.unused_by is not None
    paths = [store.path(r["key"]) for r in doomed] if chosen else []
    if args.bad:
        paths += sorted(store.root.glob("*.pt.bad-*")) if store.root.is_dir() else []
    size = sum(p.stat().st_size for p in paths) / 1e6
    for path in paths:
        print(("deleting " if args.yes else "would delete ") + str(path))
        if args.yes:
            path.unlink()
    print(f"{len(paths)} entries, {size:.0f} MB" + ("" if args.yes else " (add --yes to delete)"),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
