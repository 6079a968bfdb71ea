"""scGen, rebuilt one component at a time.

Modules follow the pipeline, each importing only those before it:
config -> data -> model -> training -> prediction -> metrics -> experiment -> plots -> tracking.
"""
from .config import ScGenConfig, preset
from .data import load, load_for, split_held_out
from .experiment import Result, run
from .prediction import predict
from .model import TrainedModel
from .training import train

__all__ = ["ScGenConfig", "preset", "load", "load_for", "split_held_out", "run", "Result",
           "predict", "train", "TrainedModel"]
__version__ = "0.1.0"
