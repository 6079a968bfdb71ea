"""Planning: from a profile, the stage files and ``-p`` values to the jobs a runner runs.

A job is one notebook run: a stage x held-out cell type x seed, as the stage's
grid says.  Its identity (``Job.key``) is its stage, notebook parameters,
effective config and the sha256 of its data, so changed data or settings rerun.

Parameters reach a notebook in layers, each overriding the one before:
preset -> dataset -> stage file ``config`` -> profile (``parameters``, then
``stage_parameters``) -> ``-p`` -> ``-p overrides``.  A ``-p`` that is
neither a parameter of a notebook nor a config field is a :class:`UsageError`
before any run is made.  ``ablation_record`` plans its rows with the same
:func:`plan`.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from . import tracking
from .config import ScGenConfig
from .data import DATASETS, held_out_types, hold_out_problem, obs_of, resolve_path
from .paths import NOTEBOOK_DIR
from .stages import (CONFIG_FIELDS, PROFILES_FILE, StageError, config_layers, load_profiles,
                     load_stage, notebook_parameters, stage_config, variants_of)
from .store import TrainingStore



# parameters every stage notebook has, which the runner sets itself
# what the runner itself passes each notebook (never a -p or profile key): where to log,
# and the job's effective config, built once here (Job.config)
RUNNER_PARAMETERS = ("mlflow_tracking_uri", "mlflow_experiment", "mlflow_run_id", "config")


class UsageError(ValueError):
    """Bad command line, profile or stage input: the runner exits 2 before making any run."""


@dataclass
class Job:
    stage: str
    notebook: Path
    parameters: dict
    run_name: str
    config: ScGenConfig | None = None
    data_sha256: str = "unknown"
    last: bool = False  # runs after every other job (the comparison notebook)
    run_id: str | None = None
    status: str = "PENDING"
    seconds: float = 0.0
    output: Path | None = None
    error: str = ""
    metrics: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The job's identity: what decides its result (code aside: ``--force`` after a change)."""
        identity = {"stage": self.stage, "data_sha256": self.data_sha256,
                    "parameters": {k: v for k, v in self.parameters.items()
                                   if k not in RUNNER_PARAMETERS},
                    "config": self.config.to_dict() if self.config else None}
        text = json.dumps(identity, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    cell_types: list[str] = field(default_factory=list)  # held out in turn inside the notebook
    trains: bool = True

    @property
    def training_key(self) -> str | dict | None:
        """What identifies the stage config's trained model; for a stage that loops over
        held-out types, one each (variants aside: see :meth:`variant_configs`)."""
        if not (self.config and self.trains):
            return None
        if not self.cell_types:
            return self.config.training_key(self.data_sha256)
        return {t: self.config.replace(held_out_cell_type=t).training_key(self.data_sha256)
                for t in self.cell_types}

    def variant_configs(self) -> list[tuple[str, ScGenConfig]]:
        """(variant, config) of every result this job makes: each held-out type it loops
        over (or its own) times each variant its notebook runs (:func:`stages.variants_of`)."""
        if not (self.config and self.trains):
            return []
        variants = variants_of(self.stage, self.parameters)
        types = self.cell_types or [self.config.held_out_cell_type]
        return [(name, self.config.replace(held_out_cell_type=t, **changes))
                for t in types for name, changes in variants.items()]

    @property
    def trainings(self) -> set[str]:
        """The training keys this job needs (the training store's keys)."""
        return {config.training_key(self.data_sha256) for _, config in self.variant_configs()}


# --- planning: from profile, stage files and -p to jobs --------------------------------

def is_path_parameter(name: str) -> bool:
    """Parameters that hold a file path: ``dataset``, and names ending in _csv, _path, _results."""
    return name == "dataset" or name.endswith(("_csv", "_path", "_results"))


def resolve_paths(values: dict, base: Path) -> dict:
    """Path parameters given relative are read relative to ``base`` (the caller's folder, or
    the profile file's): notebooks run in notebooks/, so they are passed on absolute."""
    def resolved(name, value):
        if not (is_path_parameter(name) and isinstance(value, str) and value not in DATASETS
                and not Path(value).is_absolute()):
            return value
        candidate = (base / value).expanduser()
        # absolute, links kept: the file's name is the user's (it names the experiment)
        return os.path.abspath(candidate) if candidate.exists() else value

    return {name: resolved(name, value) for name, value in values.items()}


def route(values: dict, accepts: set[str], where: str, into: dict, config_layer: dict,
          notebook: str) -> None:
    """Sort ``values`` into notebook parameters (``into``) and config changes (``config_layer``)."""
    for name, value in values.items():
        if name in CONFIG_FIELDS:
            config_layer[name] = value
        elif name in accepts:
            into[name] = value
        else:
            raise UsageError(f"{where}: {name!r} is neither a config field nor a parameter of "
                             f"{notebook}; its parameters: {sorted(accepts)}")


def plan(profile_name: str, stages: list[str] | None = None, profiles_path: Path | None = None,
         extra_parameters: dict | None = None, caller_dir: Path | None = None) -> list[Job]:
    """The jobs of a profile, in stage order, each with its effective config.

    Raises :class:`UsageError` (naming the file and key) for anything that
    would otherwise be dropped or misread.
    """
    caller_dir = caller_dir or Path.cwd()
    profiles_file = Path(profiles_path) if profiles_path else None
    try:
        profiles = load_profiles(profiles_file) if profiles_file else load_profiles()
    except StageError as error:
        raise UsageError(str(error)) from None
    if profile_name not in profiles:
        raise UsageError(f"unknown profile {profile_name!r}; profiles: {sorted(profiles)}")
    profile = profiles[profile_name]
    profile_dir = (profiles_file or PROFILES_FILE).resolve().parent
    user = resolve_paths(extra_parameters or {}, caller_dir)
    # an explicit held-out type or seed replaces that axis of the profile's grid
    held_out = user.pop("held_out_cell_type", profile["held_out"])
    held_out = [held_out] if isinstance(held_out, str) else list(held_out)
    observations: dict[Path, pd.DataFrame] = {}
    seeds = user.pop("seed", profile["seeds"])
    seeds = [seeds] if isinstance(seeds, (int, str)) else list(seeds)
    for axis, values in (("held_out_cell_type", held_out), ("seed", seeds)):
        if not values:
            raise UsageError(f"-p {axis}: an empty list makes no job")
    names = stages or profile["stages"]
    try:
        loaded = [load_stage(name) for name in names]
    except StageError as error:
        raise UsageError(str(error)) from None

    unused = set(user) - {"overrides"}
    unclaimed = set(profile["parameters"]) - CONFIG_FIELDS  # profile-wide keys no notebook takes
    jobs = []
    for stage in loaded:
        name, notebook = stage["name"], NOTEBOOK_DIR / stage["notebook"]
        accepts = set(notebook_parameters(notebook)) - set(RUNNER_PARAMETERS)  # the runner's own
        unclaimed -= accepts
        parameters, profile_config, overrides = {}, {}, {}
        where = f"profile {profile_name!r}"
        common = resolve_paths(profile["parameters"], profile_dir)
        # profile-wide parameters go to the notebooks that take them
        route({k: v for k, v in common.items() if k in accepts | CONFIG_FIELDS}, accepts,
              where, parameters, profile_config, notebook.name)
        route(stage["parameters"], accepts, f"stage file {name}.yaml", parameters, profile_config,
              notebook.name)
        own = resolve_paths(profile["stage_parameters"].get(name, {}), profile_dir)
        route(own, accepts,
              f"{where}, stage_parameters.{name}", parameters, profile_config, notebook.name)
        for key, value in user.items():  # -p: a notebook parameter, else a config field
            if key == "overrides":
                continue
            if key in accepts:
                parameters[key] = value
                unused.discard(key)
            elif key in CONFIG_FIELDS and "overrides" in accepts:
                overrides[key] = value
                unused.discard(key)
        takes_config = "overrides" in accepts
        for given in (parameters.get("overrides"), user.get("overrides")):
            if given is not None and not isinstance(given, dict):
                raise UsageError(f"overrides must map config fields to values (e.g. "
                                 f"'{{dropout: 0.5}}'), got {given!r}")
        if takes_config:
            parameters["profile_config"] = profile_config
            parameters["overrides"] = {**(parameters.get("overrides") or {}), **overrides,
                                       **(user.get("overrides") or {})}

        stage_held_out = held_out
        if stage["trains"] and held_out in (["default"], ["all"]):  # words the data resolve
            stage_held_out = dataset_types(name, parameters, held_out[0], observations)
        if parameters.get("held_out_cell_types") == "default":
            parameters["held_out_cell_types"] = dataset_types(name, parameters, "default",
                                                              observations)
        grid = [{}]
        if stage["grid"] == "seed":
            grid = [{"seed": s} for s in seeds]
            if "held_out_cell_type" in (extra_parameters or {}) and "held_out_cell_types" in accepts:
                parameters["held_out_cell_types"] = stage_held_out
        elif stage["grid"] == "held_out x seed":
            if held_out == ["default"]:
                stage_held_out = stage_held_out[:1]
            grid = [{"held_out_cell_type": h, "seed": s} for h in stage_held_out for s in seeds]
        for point in grid:
            values = {**parameters, **point}
            config = None
            if takes_config:
                try:
                    config = stage_config(name, **config_layers(values))
                except (KeyError, ValueError, TypeError) as error:
                    raise UsageError(str(error.args[0] if error.args else error)) from None
            run_name = tracking.stage_run_name(
                name, *(point[k] for k in ("held_out_cell_type", "seed") if k in point))
            jobs.append(Job(name, notebook, values, run_name, config,
                            last=bool(stage["last"]), trains=bool(stage["trains"])))
    if not jobs:
        raise UsageError(f"profile {profile_name!r} makes no job (no stage, held-out type or seed)")
    if unused:
        raise UsageError(f"-p {sorted(unused)}: not a parameter or config field of any notebook "
                         f"in this run ({', '.join(s['name'] for s in loaded)})")
    if unclaimed:
        raise UsageError(f"profile {profile_name!r}, parameters: {sorted(unclaimed)} is neither a "
                         "config field nor a parameter of any notebook of the profile")
    return jobs


def dataset_types(stage: str, parameters: dict, word: str,
                  observations: dict[Path, pd.DataFrame]) -> list[str]:
    """The held-out types ``word`` names in the stage's dataset: ``all`` = every type the
    hold-out rule allows, ``default`` = the dataset's showcase types (data.held_out_types)."""
    try:
        config = stage_config(stage, **config_layers(parameters))
        path = resolve_path(config.dataset)
        if path not in observations:
            observations[path] = obs_of(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return held_out_types(observations[path], config, word)
    except (KeyError, ValueError, TypeError, FileNotFoundError) as error:
        raise UsageError(f"stage {stage}: held-out types {word!r}: "
                         f"{error.args[0] if error.args else error}") from None


def with_checksums(jobs: list[Job]) -> list[Job]:
    """Fill in each job's data checksum (part of its identity) and the cell types it holds
    out, each checked against the data by the hold-out rule (:func:`data.hold_out_problem`):
    missing data or a type that cannot be held out is a UsageError, before any run."""
    observations: dict[Path, pd.DataFrame] = {}
    for job in jobs:
        dataset = job.config.dataset if job.config else job.parameters.get("dataset") or "kang"
        try:
            path = resolve_path(dataset)
        except FileNotFoundError as error:
            raise UsageError(f"stage {job.stage}: {error}") from None
        job.data_sha256 = tracking.data_checksum(path)
        if not (job.config and job.trains):
            continue
        if path not in observations:
            try:
                observations[path] = obs_of(path)
            except ValueError as error:
                raise UsageError(f"stage {job.stage}: {error}") from None
        obs = observations[path]
        for key in (job.config.cell_type_key, job.config.condition_key):
            if key not in obs:
                raise UsageError(f"stage {job.stage}: {path}: obs column {key!r} not found; "
                                 f"available: {list(obs.columns)}")
        chosen = job.parameters.get("held_out_cell_types")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the notebook says which types 'all' leaves out
                if chosen is not None:
                    job.cell_types = held_out_types(obs, job.config, chosen)
                else:
                    problem = hold_out_problem(obs, job.config, job.config.held_out_cell_type)
                    if problem:
                        raise ValueError(problem)
        except ValueError as error:
            raise UsageError(f"stage {job.stage}, {path.name}: {error}") from None
    return jobs


def dry_run(jobs: list[Job], stream=sys.stdout, store: TrainingStore | None = None) -> None:
    """One JSON object per job (what would run and with what), then the number of jobs,
    of unique trainings (every variant's) and of those already in the training store;
    nothing is written."""
    for job in jobs:
        print(json.dumps({"stage": job.stage, "run_name": job.run_name, "job_key": job.key,
                          "training_key": job.training_key, "data_sha256": job.data_sha256,
                          "trainings": sorted(job.trainings),
                          "notebook": str(job.notebook.relative_to(NOTEBOOK_DIR.parent)),
                          "parameters": job.parameters,
                          "config": job.config.to_dict() if job.config else None},
                         default=str), file=stream)
    trainings = set().union(*(job.trainings for job in jobs))
    stored = trainings & (store or TrainingStore()).keys()
    print(json.dumps({"jobs": len(jobs), "unique_trainings": len(trainings),
                      "stored": len(stored)}), file=stream)



def parse_parameters(pairs) -> dict:
    """``-p NAME VALUE`` pairs, VALUE read as YAML; a name twice is an error."""
    values = {}
    for name, value in pairs:
        if name in values:
            raise UsageError(f"-p {name} given twice")
        try:
            values[name] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise UsageError(f"-p {name}: {value!r} is not a YAML value: {error}") from None
    return values
