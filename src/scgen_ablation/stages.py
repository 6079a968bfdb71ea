"""The ablation's stage and profile files (``ablation/``), read into configs.

A stage file names only what the stage changes over the preset.  The config
a notebook trains with is built in layers, each overriding the one before::

    preset (``paper`` or ``recommended``)
      -> the dataset's keys and labels (``data.DATASETS``, for a registered dataset)
      -> the stage file's ``config``
      -> the profile's config fields (``parameters``, then ``stage_parameters``)
      -> what the user passes (``runner -p`` or ``papermill -p``; None = unset)
      -> ``overrides``

:func:`stage_config` is that order, in one place. The runner calls it once
per job (``planning.plan``, what ``--dry-run`` prints) and passes the result
to the notebook whole (its ``config`` parameter); a notebook run by hand
(``config`` None) calls it through :func:`open_stage`, from the same layers.
"""
from __future__ import annotations

import functools
from pathlib import Path

import yaml

from .config import ScGenConfig, preset
from .data import dataset_fields
from .paths import ABLATION_DIR

STAGES_DIR = ABLATION_DIR / "stages"
PROFILES_FILE = ABLATION_DIR / "profiles.yaml"
GRIDS = ("once", "seed", "held_out x seed")
STAGE_KEYS = {"notebook": str, "grid": str, "config": dict, "parameters": dict, "last": bool,
              "trains": bool, "variants": dict, "pick": str}
PROFILE_KEYS = {"stages": list, "held_out": list, "seeds": list, "parameters": dict,
                "stage_parameters": dict}
CONFIG_FIELDS = set(ScGenConfig.__dataclass_fields__)
# notebook parameters that are config fields: None in the parameters cell = unset
CONFIG_PARAMETERS = ("dataset", "held_out_cell_type", "seed", "epochs")
# the fields that say which data a stage read (all a stage that trains nothing logs)
DATA_FIELDS = ("dataset", "condition_key", "cell_type_key", "control_label", "stimulated_label",
               "preprocess", "n_top_genes")


class StageError(ValueError):
    """A stage or profile file that does not follow its schema; names the file and key."""


def _check_keys(values, schema: dict, where: str) -> dict:
    if not isinstance(values, dict):
        raise StageError(f"{where}: expected a mapping of keys, got {type(values).__name__}")
    for key, value in values.items():
        if key not in schema:
            raise StageError(f"{where}: unknown key {key!r}; allowed keys: {sorted(schema)}")
        if not isinstance(value, schema[key]):
            raise StageError(f"{where}: {key!r} must be a {schema[key].__name__}, got {value!r}")
    return values


def stage_files(folder: Path | None = None) -> dict[str, Path]:
    return {path.stem: path for path in sorted(Path(folder or STAGES_DIR).glob("*.yaml"))}


def load_stage(name: str, folder: Path | None = None) -> dict:
    """A stage's settings: notebook, grid, config changes, extra notebook parameters."""
    files = stage_files(folder)
    if name not in files:
        raise StageError(f"unknown stage {name!r}; stages: {sorted(files)}")
    where = str(files[name])
    stage = _check_keys(yaml.safe_load(files[name].read_text()) or {}, STAGE_KEYS, where)
    stage = {"config": {}, "parameters": {}, "grid": "held_out x seed", "last": False,
             "trains": True, **stage}
    if stage["grid"] not in GRIDS:
        raise StageError(f"{where}: grid {stage['grid']!r} is not one of {GRIDS}")
    if "notebook" not in stage:
        raise StageError(f"{where}: no 'notebook' key")
    try:
        base = ScGenConfig().replace(**stage["config"])
    except (KeyError, ValueError, TypeError) as error:
        raise StageError(f"{where}: config: {error}") from None
    stage["variant_groups"] = _variant_groups(stage.get("variants") or {}, where)
    for group, variants in stage["variant_groups"].items():
        for variant, changes in variants.items():
            try:
                base.replace(**changes)
            except (KeyError, ValueError, TypeError) as error:
                where_in = f"variants.{group}.{variant}" if group else f"variants.{variant}"
                raise StageError(f"{where}: {where_in}: {error}") from None
    names = [v for variants in stage["variant_groups"].values() for v in variants]
    if "pick" in stage and stage["pick"] not in names:
        raise StageError(f"{where}: pick {stage['pick']!r} is not one of its variants {names}")
    stage["name"] = name
    return stage


def _variant_groups(variants: dict, where: str) -> dict[str, dict[str, dict]]:
    """A stage file's ``variants`` as {group: {name: config changes}}.

    Variants are named config changes (``name: {field: value}``), either listed
    directly (one group, named "") or in groups (``group: {name: {...}}``),
    as stage 06 separates prediction from training levers.  Which of the two a
    file uses is read from its shape (changes hold values, groups hold
    mappings), so a misspelt field is reported under its own variant's name.
    """
    def is_group(value):
        return (isinstance(value, dict) and bool(value) and not set(value) <= CONFIG_FIELDS
                and all(member is None or isinstance(member, dict) for member in value.values()))

    def changes_of(changes, label):
        if changes is None:
            return {}
        if not isinstance(changes, dict):
            raise StageError(f"{where}: {label} must map config fields to values, got "
                             f"{changes!r}")
        unknown = sorted(set(changes) - CONFIG_FIELDS)
        if unknown:
            raise StageError(f"{where}: {label}: unknown config field(s) {unknown}; "
                             f"config fields: {sorted(CONFIG_FIELDS)}")
        return dict(changes)

    if not variants:
        return {}
    if not isinstance(variants, dict):
        raise StageError(f"{where}: variants must map names to config changes")
    grouped = [is_group(v) for v in variants.values()]
    if not any(grouped):
        return {"": {name: changes_of(changes, f"variants.{name}")
                     for name, changes in variants.items()}}
    if not all(grouped):
        flat = [name for name, g in zip(variants, grouped) if not g]
        raise StageError(f"{where}: variants mixes groups of variants with variants "
                         f"{flat}: list them all directly or all in groups")
    return {group: {name: changes_of(changes, f"variants.{group}.{name}")
                    for name, changes in members.items()}
            for group, members in variants.items()}


def variants_of(stage: str, parameters: dict | None = None) -> dict[str, dict]:
    """The variants a stage's notebook runs: {name: config changes over the stage's config}.

    ``parameters`` are the notebook's: ``variants`` (a list of names, None =
    all) chooses among directly listed variants; in a grouped stage the
    parameter ``<group>_levers`` chooses that group's (stage 06:
    ``training_levers``; None = all).  A stage without variants runs one, named
    after its preset.
    """
    definition = load_stage(stage)
    parameters = {**definition["parameters"], **(parameters or {})}
    groups = definition["variant_groups"]
    if not groups:
        return {parameters.get("preset_name") or "paper": {}}
    chosen = {}
    for group, members in groups.items():
        wanted = parameters.get(f"{group}_levers" if group else "variants")
        if wanted is None:
            chosen.update(members)
            continue
        unknown = [name for name in wanted if name not in members]
        if unknown:
            raise StageError(f"stage {stage}: unknown variant(s) {unknown}; "
                             f"known: {list(members)}")
        chosen.update({name: members[name] for name in members if name in wanted})
    return chosen


def summary(stage: str, by_variant: dict[str, list[dict]], where: str) -> tuple[list[dict], str]:
    """What a stage's parent run averages, and what that covers: the stage's own pick
    (``pick`` in its stage file), where it ran, so that every stage's row in the UI is one
    method; else every variant's rows.  ``by_variant``: variant -> its results' metrics."""
    pick = load_stage(stage).get("pick")
    if pick in by_variant:
        return by_variant[pick], f"the stage's pick, {pick} (of {len(by_variant)} variants), {where}"
    rows = [row for rows in by_variant.values() for row in rows]
    return rows, f"{len(by_variant)} variants ({', '.join(by_variant)}), {where}"


def load_profiles(path: Path | None = None) -> dict[str, dict]:
    """Every profile of a profiles file, checked against its schema and completed with defaults."""
    path = Path(path or PROFILES_FILE)
    if not path.is_file():
        raise StageError(f"profiles file {str(path)!r} does not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise StageError(f"{path}: expected profiles by name, got {type(raw).__name__}")
    known = stage_files()
    profiles = {}
    for name, profile in raw.items():
        where = f"{path}, profile {name!r}"
        if isinstance(profile, dict) and profile.get("held_out") in ("default", "all"):
            profile = {**profile, "held_out": [profile["held_out"]]}  # resolved in the data
        profile = _check_keys(profile, PROFILE_KEYS, where)
        profile = {"stages": list(known), "held_out": ["default"], "seeds": [0], "parameters": {},
                   "stage_parameters": {}, **profile}
        for stage in list(profile["stages"]) + list(profile["stage_parameters"]):
            if stage not in known:
                raise StageError(f"{where}: unknown stage {stage!r}; stages: {sorted(known)}")
        for stage, values in profile["stage_parameters"].items():
            if not isinstance(values, dict):
                raise StageError(f"{where}: stage_parameters.{stage} must be a mapping")
        for axis in ("held_out", "seeds"):
            if not isinstance(profile[axis], list) or not profile[axis]:
                raise StageError(f"{where}: {axis!r} must be a non-empty list, got "
                                 f"{profile[axis]!r}")
        if not all(isinstance(h, str) for h in profile["held_out"]):
            raise StageError(f"{where}: 'held_out' must be a list of cell type names")
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in profile["seeds"]):
            raise StageError(f"{where}: 'seeds' must be a list of whole numbers")
        profiles[name] = profile
    return profiles


@functools.lru_cache(maxsize=None)
def notebook_parameters(notebook: Path) -> tuple[str, ...]:
    """The names in a notebook's ``parameters`` cell."""
    import papermill  # only the runner needs it

    return tuple(papermill.inspect_notebook(str(notebook)))


def config_layers(parameters: dict) -> dict:
    """From a notebook's parameter values, the keyword arguments of :func:`stage_config`."""
    return {"preset_name": parameters.get("preset_name") or "paper",
            "profile_config": parameters.get("profile_config") or {},
            "parameters": {k: parameters.get(k) for k in CONFIG_PARAMETERS},
            "overrides": parameters.get("overrides") or {}}


def stage_config(stage: str, preset_name: str = "paper", profile_config: dict | None = None,
                 parameters: dict | None = None, overrides: dict | None = None) -> ScGenConfig:
    """The config a stage notebook runs with: the layers of the module docstring, in order.

    ``parameters`` are the notebook's own config parameters; a None there
    leaves the field to the layers below.
    """
    config = preset(preset_name)
    dataset = config.dataset  # the last layer that names one decides
    for layer in (load_stage(stage)["config"], profile_config, parameters, overrides):
        if isinstance(layer, dict) and layer.get("dataset") is not None:
            dataset = layer["dataset"]
    layers = (("dataset", dataset_fields(dataset) if isinstance(dataset, str) else {}),
              ("stage file", load_stage(stage)["config"]),
              ("profile", profile_config or {}),
              ("parameters", {k: v for k, v in (parameters or {}).items() if v is not None}),
              ("overrides", overrides or {}))
    for name, changes in layers:
        if not isinstance(changes, dict):
            raise TypeError(f"{name} of stage {stage}: expected a mapping, got {changes!r}")
        try:
            config = config.replace(**changes)
        except (KeyError, ValueError, TypeError) as error:
            raise type(error)(f"{name} of stage {stage}: {error.args[0]}") from None
    return config


def open_stage(stage: str, *, preset_name: str = "paper", profile_config: dict | None = None,
               overrides: dict | None = None, tracking_uri: str | None = None,
               experiment: str | None = None, run_id: str | None = None,
               varies: tuple[str, ...] = (), config: dict | None = None, **parameters):
    """What every stage notebook does first: config, data, and its MLflow run.

    The config is the runner's (``config``, built once by ``planning.plan``:
    what ``runner --dry-run`` shows), or, in a notebook run by hand, built here
    by the same :func:`stage_config` from the same layers. Then loads the data,
    opens the run (the runner's ``run_id``, else a new run in the dataset's
    experiment) and logs the config, less the fields its variants sweep
    (``varies``). Returns ``(config, adata)``.
    """
    from . import tracking
    from .data import load_for

    if config is None:
        config = stage_config(stage, preset_name, profile_config, parameters, overrides)
    else:
        config = ScGenConfig.from_dict(config)
    adata = load_for(config)
    grid = load_stage(stage)["grid"]
    name = tracking.stage_run_name(stage, *{"once": (), "seed": (config.seed,)}.get(
        grid, (config.held_out_cell_type, config.seed)))
    tracking.start(run_id, uri=tracking_uri,
                   experiment=experiment or tracking.experiment_for(config.dataset),
                   run_name=name, tags=tracking.stage_tags(stage))
    # a stage run once per profile holds nothing out: no held-out type or seed to claim
    unused = ("held_out_cell_type", "seed") if grid == "once" else ()
    if not load_stage(stage)["trains"]:  # (00, 08) nothing trained: only what data it read
        unused = tuple(f for f in CONFIG_FIELDS if f not in DATA_FIELDS)
    tracking.log_config(config, adata.uns["source_file"], varies=tuple(varies), unused=unused)
    return config, adata
