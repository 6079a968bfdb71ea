"""The training store: every trained model saved once, under the key of what trained it.

A training is identified by ``config.training_key(data_sha256)``: the config
fields that change training (prediction fields, device and checkpoints left
out), the seed, the held-out type, and the sha256 of the data file.  That is
the ``training_key`` that ``runner --dry-run`` prints.  Every stage, variant
and study lever that needs the same training loads it from here instead of
training again, and a prediction-only variant never retrains.

Each entry is one file ``<root>/<key>.pt`` written atomically (temporary file,
then rename) by :meth:`TrainedModel.save` and read back with
``weights_only=True``.  It holds the final weights, the best validation
epoch's weights when they differ, the per-epoch history, the config, the
genes, the training time and device, and a fingerprint of the training
matrix, checked on load: data changed in memory after loading are never
matched to a model trained on the file.

Where: ``$SCGEN_TRAINING_STORE`` if set (``runner --store`` sets it for its
jobs), else ``mlruns/trainings`` in the project.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pickle
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np

from .config import ScGenConfig
from .data import dense
from .paths import MLRUNS_DIR

if TYPE_CHECKING:  # torch is imported where a model is loaded or trained, so the runner starts fast
    from .model import TrainedModel
    from .training import EpochCallback

ENVIRONMENT_VARIABLE = "SCGEN_TRAINING_STORE"


def default_root() -> Path:
    return Path(os.environ.get(ENVIRONMENT_VARIABLE) or MLRUNS_DIR / "trainings")


def fingerprint(adata: ad.AnnData) -> str:
    """A hash of the cells, genes and values a model is trained on."""
    digest = hashlib.sha256()
    digest.update("\n".join(map(str, adata.var_names)).encode())
    digest.update("\n".join(map(str, adata.obs_names)).encode())
    digest.update(np.ascontiguousarray(dense(adata.X), dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


class TrainingStore:
    """Trained models by training key, in one folder (see the module docstring)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root()

    def __repr__(self) -> str:
        return f"TrainingStore({str(self.root)!r})"

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def keys(self) -> set[str]:
        return {p.stem for p in self.root.glob("*.pt")} if self.root.is_dir() else set()

    @contextlib.contextmanager
    def lock(self, key: str):
        """Held while ``key`` is trained, so that two processes needing it train it once.

        A store that cannot be written (a read-only mount) is read without the
        lock: nothing can be trained into it, so there is nothing to serialise.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle = open(self.root / f"{key}.lock", "w")
        except OSError:
            if not self.root.is_dir():
                raise
            handle = None  # read-only: yielded below, outside this handler
        if handle is None:
            yield
            return
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def check(self) -> None:
        """Raise a clear error when this store can be neither read nor made (the runner's
        and the dry run's check before any job): the folder must be a folder, or one that
        can be created; it is not created here (a store that exists read-only is fine)."""
        root = self.root
        if root.exists():
            if not root.is_dir():
                raise NotADirectoryError(f"training store {str(root)!r} is not a folder")
            if not os.access(root, os.R_OK | os.X_OK):
                raise PermissionError(f"training store {str(root)!r} cannot be read")
            return
        parent = root.parent
        while not parent.exists():
            parent = parent.parent
        try:  # make (and remove) a folder where the store's first missing folder would go
            probe = Path(tempfile.mkdtemp(prefix=".scgen-store-probe-", dir=parent))
            probe.rmdir()
        except OSError as error:
            raise OSError(f"training store {str(root)!r} cannot be created: {parent} does not "
                          f"take new folders ({error.strerror or error})") from None

    def writable(self) -> bool:
        return os.access(self.root, os.W_OK) if self.root.is_dir() else True

    def set_aside(self, key: str, why: str) -> None:
        """Move a bad entry out of the way (``<key>.pt.bad-<time>``) so it is trained again;
        on a store that cannot be written, say so and leave it."""
        path = self.path(key)
        target = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%dT%H%M%S')}")
        try:
            os.replace(path, target)
        except OSError as error:
            warnings.warn(f"stored training {str(path)!r} {why}; it cannot be moved aside "
                          f"({error}): training again without storing; delete the file",
                          stacklevel=3)
            return
        warnings.warn(f"stored training {str(path)!r} {why}: moved aside to {target.name} "
                      "(safe to delete) and trained again", stacklevel=3)

    def get(self, key: str, data_sha256: str, device: str = "auto") -> TrainedModel | None:
        """The entry ``key`` if it is what its name claims, else None.

        An entry is used only if it loads, and its saved config and the data's
        checksum make ``key`` again: a file copied or renamed onto another
        training's key, a truncated or foreign file, is set aside (and so
        trained again) with a warning that names it.
        """
        if not self.has(key):
            return None
        try:
            model = self.load(key, device)
        except (ValueError, pickle.UnpicklingError) as error:
            self.set_aside(key, f"cannot be read ({str(error).splitlines()[0][:200]})")
            return None
        made = model.config.replace(keep_best=False).training_key(data_sha256)
        if made != key:
            self.set_aside(key, f"was made by another training (its saved config makes key "
                                f"{made}, not {key})")
            return None
        if len(model.history) > model.config.epochs:
            self.set_aside(key, f"holds {len(model.history)} epochs of history for a "
                                f"{model.config.epochs}-epoch training")
            return None
        return model

    def load(self, key: str, device: str = "auto") -> TrainedModel:
        from .model import TrainedModel

        return TrainedModel.load(self.path(key), device)

    def save(self, key: str, model: TrainedModel) -> Path:
        return model.save(self.path(key), with_best=True)


def data_sha256(adata: ad.AnnData) -> str | None:
    """The sha256 of the file ``adata`` was loaded from (set by :func:`data.load`), if any."""
    return adata.uns.get("source_sha256")


def train_stored(adata: ad.AnnData, training_data: ad.AnnData, config: ScGenConfig,
                 store: TrainingStore | None, *, callback: EpochCallback | None = None,
                 progress: bool = True, **kwargs) -> TrainedModel:
    """``train(training_data, config)``, or the stored model of that training.

    ``adata`` is the loaded dataset ``training_data`` was split from: its file's
    checksum makes the key.  Without a store or a file checksum this just
    trains.  A stored model replays its history through ``callback``, so its
    losses are logged with every run that uses it.  ``model.train_seconds``
    is the original training's time; ``model.reused`` says it was loaded.
    """
    sha = data_sha256(adata)
    if store is None or sha is None:
        return _timed_train(training_data, config, callback, progress, **kwargs)
    # stored weights are the last epoch's (and the best epoch's beside them), whatever
    # keep_best says: keep_best is a prediction choice, applied on the way out
    wanted, config = config, config.replace(keep_best=False)
    key = config.training_key(sha)
    content = fingerprint(training_data)
    with store.lock(key):
        model = store.get(key, sha, config.device)
        if model is not None and model.data_fingerprint == content:
            model.reused = True
            for record in model.history:
                if callback is not None:
                    callback(record["epoch"], record)
            return model.for_prediction(wanted)
        if model is not None:
            warnings.warn(f"stored training {key} was made from other data than these "
                          f"(changed after loading?): training again, not storing", stacklevel=2)
            return _timed_train(training_data, wanted, callback, progress, **kwargs)
        model = _timed_train(training_data, config, callback, progress, **kwargs)
        model.data_fingerprint = content
        if not store.has(key):  # a bad entry that could not be moved aside stays unused
            try:
                store.save(key, model)
            except OSError as error:
                warnings.warn(f"the training store {str(store.root)!r} cannot be written "
                              f"({error}): this training is not stored", stacklevel=2)
    return model.for_prediction(wanted)


def _timed_train(training_data, config, callback, progress, **kwargs) -> TrainedModel:
    from .training import train

    started = time.perf_counter()
    model = train(training_data, config, callback=callback, progress=progress, **kwargs)
    model.train_seconds = time.perf_counter() - started
    model.trained_on = model.device.type
    return model
