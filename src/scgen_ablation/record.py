"""The one record: a CSV of result rows that several processes append to, safely.

Every committed record of this repository (the ablation's, the small-data study's, the
stopping and score-by-epoch benchmarks') is written by :class:`Record`: under a lock
file, rewritten whole and atomically, a row replacing an older one with the same key
(so a remade row replaces a stale one, and a rerun never duplicates).  The ablation
record's key is :data:`KEY`; a record with another key names it.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
import threading
from pathlib import Path

import pandas as pd

# one row of the record; a row made on one dataset never counts for another
KEY = ["dataset", "stage", "variant", "held_out_cell_type", "seed"]


def read_csv(path: Path) -> pd.DataFrame:
    """A CSV of rows, or a ValueError that names the file (missing, empty, not a CSV)."""
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} cannot be read as a CSV of rows: {error}") from None


def check_rows(rows: pd.DataFrame, where: str, key: list[str] = KEY) -> pd.DataFrame:
    """``rows`` with whole-number seeds, or a ValueError that names the bad column or rows."""
    missing = [c for c in key if c not in rows]
    if missing:
        raise ValueError(f"{where}: column(s) {missing} missing; a record row has {key}")
    seeds = pd.to_numeric(rows["seed"], errors="coerce")
    bad = rows.index[seeds.isna() | (seeds % 1 != 0)]
    if len(bad):
        raise ValueError(f"{where}: seed is not a whole number in row(s) "
                         f"{[int(i) + 2 for i in bad[:5]]} (line numbers): "
                         f"{list(rows.loc[bad[:5], 'seed'])}")
    return rows.astype({"seed": int})



def pending(planned: list[dict], done: pd.DataFrame, key: list[str] = KEY,
            made_by: str | list[str] | None = None) -> list[dict]:
    """The one answer to "what is left to do": the ``planned`` rows that ``done`` lacks
    (matched on ``key``), in plan order. With ``made_by`` (a column or columns: the
    ablation record's ``training_key``, ``scoring_key`` and ``prediction_version``), a
    row recorded with other values of them, or without them, is stale, so pending too."""
    def identity(values) -> tuple:
        return tuple(int(v) if k == "seed" else str(v) for k, v in zip(key, values))

    made_by = [made_by] if isinstance(made_by, str) else list(made_by or [])
    columns = key + made_by
    if not len(done) or any(c not in done for c in columns):
        return list(planned)
    recorded = {identity(row[:len(key)]): tuple(map(str, row[len(key):]))
                for row in done[columns].itertuples(index=False, name=None)}
    out = []
    for row in planned:
        found = recorded.get(identity(row[k] for k in key))
        if found is None or found != tuple(str(row[c]) for c in made_by):
            out.append(row)
    return out


# the columns after the key in the ablation record: where and how each row was made
META = ["training_key", "scoring_key", "prediction_version", "device", "status", "error",
        "train_seconds", "epochs_run", "best_epoch", "reused", "source"]


def versioned(done: pd.DataFrame) -> pd.DataFrame:
    """``done`` with a whole-number ``prediction_version``: a row without one was scored
    before the column existed, on version 1 (prediction.PREDICTION_VERSION says which)."""
    if not len(done):
        return done
    version = (done["prediction_version"] if "prediction_version" in done
               else pd.Series(float("nan"), index=done.index))
    return done.assign(prediction_version=version.fillna(1).astype(int))


class Record:
    """The CSV, appended to by several threads or processes: rewritten whole (atomically)
    under a lock file, so rows with new columns (e.g. bootstrap columns) never misalign
    and no writer drops another's rows."""

    def __init__(self, path: Path, key: list[str] = KEY, leading: list[str] = META):
        self.path = Path(path)
        self.key = list(key)  # a row replaces an older one with the same values of these
        self.leading = [c for c in leading if c not in self.key]  # columns after the key
        self.lock = threading.Lock()

    def read(self) -> pd.DataFrame:
        """The rows so far (none for a missing or empty file); a file that is not a record
        (key columns missing, a seed that is not a whole number) is a clear error."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return pd.DataFrame(columns=self.key)
        # round_trip: every number read back exactly, so a rewrite leaves old rows byte for byte
        return check_rows(pd.read_csv(self.path, float_precision="round_trip"), f"record {self.path}",
                          self.key)

    def append(self, rows: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock, open(self.path.with_suffix(".lock"), "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            table = pd.concat([self.read(), pd.DataFrame(rows)], ignore_index=True)
            table = table.drop_duplicates(self.key, keep="last")
            first = self.key + [c for c in self.leading if c in table]
            table = table[first + [c for c in table.columns if c not in first]]
            descriptor, temporary = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
            os.close(descriptor)
            table.to_csv(temporary, index=False)
            os.replace(temporary, self.path)
