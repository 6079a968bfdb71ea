"""One-off migration (run once, committed for the record): the ablation record gains a
``dataset`` column, first, naming the data each row was made on.

Every row made before datasets became an axis of the study was made on the Kang
split (``kang``): its training key holds that file's sha256.  Nothing else
changes: the other columns, their order and every number are written back as
read (values are copied as text, so no float is re-rounded).

    .venv/bin/python benchmarks/migrate_record_dataset.py [benchmarks/results/ablation_full.csv]
"""
import csv
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def migrate(path: Path, dataset: str = "kang") -> bool:
    """Add the column in place (atomically); False if it is there already."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or rows[0][0] == "dataset":
        return False
    header, body = rows[0], rows[1:]
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(descriptor, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["dataset", *header])
        writer.writerows([dataset, *row] for row in body)
    os.replace(temporary, path)
    return True


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "benchmarks/results/ablation_full.csv"
    print(f"{target}: {'dataset column added' if migrate(target) else 'already has it'}")
