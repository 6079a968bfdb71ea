"""The ablation's stage and profile files (``ablation/``), read into configs.

A stage file names only what the stage changes over the preset; the layers
are applied in this order, each overriding the one before:

    preset (``paper`` or ``recommended``) -> stage file's ``config`` -> notebook parameters -> ``overrides``
"""
from __future__ import annotations

from pathlib import Path

import yaml

from .config import ScGenConfig, preset
from .data import PROJECT_ROOT

ABLATION_DIR = PROJECT_ROOT / "ablation"
GRIDS = ("once", "seed", "held_out x seed")


def stage_files(folder: Path = ABLATION_DIR / "stages") -> dict[str, Path]:
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def load_stage(name: str, folder: Path = ABLATION_DIR / "stages") -> dict:
    """A stage's settings: notebook, grid, config changes, extra notebook parameters."""
    files = stage_files(folder)
    if name not in files:
        raise KeyError(f"unknown stage {name!r}; stages: {sorted(files)}")
    stage = yaml.safe_load(files[name].read_text()) or {}
    stage.setdefault("config", {})
    stage.setdefault("parameters", {})
    stage.setdefault("grid", "held_out x seed")
    if stage["grid"] not in GRIDS:
        raise ValueError(f"stage {name}: grid {stage['grid']!r} is not one of {GRIDS}")
    if "notebook" not in stage:
        raise ValueError(f"stage {name}: no 'notebook' key in {files[name]}")
    ScGenConfig().replace(**stage["config"])  # unknown keys fail here, naming the key
    stage["name"] = name
    return stage


def load_profiles(path: Path = ABLATION_DIR / "profiles.yaml") -> dict[str, dict]:
    return yaml.safe_load(Path(path).read_text())


def stage_config(stage: str, preset_name: str = "paper", overrides: dict | None = None,
                 **parameters) -> ScGenConfig:
    """The config a stage notebook runs with (see the module docstring for the layering)."""
    changes = load_stage(stage)["config"]
    return preset(preset_name).replace(**changes).replace(**parameters).replace(**(overrides or {}))
