"""scGen, rebuilt one component at a time.

Modules follow the pipeline, each importing only those before it:
config -> data -> model -> training -> prediction -> metrics -> experiment -> plots -> tracking.

``import scgen_ablation as sa`` is cheap: ``sa.train``, the other names below
and every module (``sa.experiment``) are imported on first use, so that the
command lines (the runner, the record) start without torch or scanpy.
"""
import importlib
import importlib.util

_EXPORTS = {"ScGenConfig": "config", "preset": "config", "load": "data", "load_for": "data",
            "split_held_out": "data", "run": "experiment", "Result": "experiment",
            "predict": "prediction", "train": "training", "TrainedModel": "model"}
__all__ = list(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:  # a module: sa.experiment
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'scgen_ablation' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])
