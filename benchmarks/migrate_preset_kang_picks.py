"""One-off migration (run once, committed for the record): the preset that was named
``recommended`` until the dataset verdicts (docs/datasets.md) is now ``kang_picks``.

The three steps picked on Kang alone (paired delta + residual decoding, a ReLU
output, the 40-epoch cosine schedule) failed the stated rule on Haber (steps 2 + 3,
top-100 mean R²), so ``recommended`` now holds only the step that passed on every
dataset.  The rows made with the old preset keep their numbers and training keys;
only the name they are filed under changes, wherever a committed CSV names it:

- the ablation record's ``variant``: ``recommended`` -> ``kang_picks``,
  ``X (recommended)`` -> ``X (kang_picks)``, ``recommended (paper schedule)`` ->
  ``kang_picks (paper schedule)``;
- the stopping benchmark's ``rule`` and the score-by-epoch ``setting``:
  ``recommended: ...`` -> ``kang_picks: ...``.

Values are copied as text (no float is re-rounded); each file is rewritten atomically
under the record's lock file.

    .venv/bin/python benchmarks/migrate_preset_kang_picks.py
"""
import csv
import fcntl
import os
import re
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OLD, NEW = "recommended", "kang_picks"


def renamed(value: str) -> str:
    value = re.sub(rf"^{OLD}(?= \(paper schedule\)$|$)", NEW, value)
    value = re.sub(rf" \({OLD}\)$", f" ({NEW})", value)
    return re.sub(rf"^{OLD}: ", f"{NEW}: ", value)


def migrate(path: Path, column: str) -> int:
    """Rename ``column``'s values in place; the number of values changed."""
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the record's writers append under this lock
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
        at = rows[0].index(column)
        changed = 0
        for row in rows[1:]:
            new = renamed(row[at])
            changed += new != row[at]
            row[at] = new
        if changed:
            descriptor, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(descriptor, "w", newline="") as handle:
                csv.writer(handle, lineterminator="\n").writerows(rows)
            os.replace(temporary, path)
    return changed


if __name__ == "__main__":
    for name, column in (("ablation_full.csv", "variant"), ("stopping.csv", "rule"),
                         ("score_by_epoch.csv", "setting")):
        print(f"{name}: {migrate(RESULTS / name, column)} values renamed")
