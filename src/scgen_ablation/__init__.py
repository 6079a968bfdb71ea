"""scGen, rebuilt one component at a time.

Modules follow the pipeline, each importing only those before it:
config -> data -> model -> training -> prediction -> metrics -> experiment -> plots -> tracking.

``import scgen_ablation as sa`` is cheap: ``sa.train`` and the other names below
import their module on first use, so that the command lines (the runner, the
record) start without torch or scanpy.
"""
import importlib

_EXPORTS = {"ScGenConfig": "config", "preset": "config", "load": "data", "load_for": "data",
            "split_held_out": "data", "run": "experiment", "Result": "experiment",
            "predict": "prediction", "train": "training", "TrainedModel": "model"}
__all__ = list(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'scgen_ablation' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__():
    return sorted([*globals(), *_EXPORTS])
