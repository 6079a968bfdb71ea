"""Data: load, validate, preprocess, split and balance.

Everything takes AnnData plus the keys and labels from the config; nothing is
hard-coded to Kang's column names.
"""
from __future__ import annotations

import functools
import hashlib
import os
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from .paths import CACHE_DIR, SHARED_DATA

# log1p of any realistic normalised count is far below this (log1p(1e6) = 13.8);
# larger values mean the log step was skipped
LOG_SCALE_MAX = 50.0


@dataclass(frozen=True)
class Dataset:
    """A named dataset: where to find it, how to check it, and how to read it.

    The keys and labels become the config's (a dataset layer under the stage
    files, see :func:`stages.stage_config`); ``preprocess`` says it holds raw
    counts that go through :func:`preprocess`; ``showcase`` are the held-out
    types a quick run shows (the first for a one-type run).  Which types can be
    held out is the same rule for every dataset (:data:`MIN_CELLS_TO_HOLD_OUT`).
    """

    filename: str
    sha256: str
    env_var: str
    url: str | None = None
    condition_key: str = "condition"
    cell_type_key: str = "cell_type"
    control_label: str = "control"
    stimulated_label: str = "stimulated"
    preprocess: bool = False
    showcase: tuple[str, ...] = ()

    def config_fields(self) -> dict:
        """The config fields this dataset sets (its keys, labels and preprocessing)."""
        return {"condition_key": self.condition_key, "cell_type_key": self.cell_type_key,
                "control_label": self.control_label, "stimulated_label": self.stimulated_label,
                "preprocess": self.preprocess}


# scGen's own Kang validation split lives in the history of the authors' repo;
# the URL is pinned to the commit that added it and checked by sha256.
DATASETS = {
    "kang": Dataset(
        filename="kang_pbmc_scgen.h5ad",
        sha256="83f89f5356a4c01f65bbcee225eb45d8d8b13b6c962724431a26c1bf568ff09e",
        env_var="SCGEN_KANG_PATH",
        url="https://github.com/theislab/scgen/raw/"
        "dd7e178f9b42b9dfef9eb18d0da4b8e3caea4cf7/data/valid.h5ad",
        showcase=("CD4T", "NK"),
    ),
    # mouse gut epithelium under Salmonella (Haber 2017), the scGen paper's second benchmark
    "haber": Dataset(
        filename="haber_salmonella_scgen.h5ad",
        sha256="8a07056144e714fc315f725b863edca469c8f2a2834e2673732a1f8b2a5873df",
        env_var="SCGEN_HABER_PATH",
        cell_type_key="cell_label", control_label="Control", stimulated_label="Salmonella",
        showcase=("Stem", "Enterocyte"),
    ),
    # raw counts, 13 finer annotations: through the package's own preprocessing
    "kang_counts": Dataset(
        filename="kang_ifnb_counts_2000.h5ad",
        sha256="4f0ef8bb2ebaf976457b58ef496d76dca41fe6fbf15f978df70e94dec303fd31",
        env_var="SCGEN_KANG_COUNTS_PATH",
        preprocess=True,
        showcase=("CD4 Naive T", "NK"),
    ),
    "kang_100genes": Dataset(
        filename="kang_counts_9517x100.h5ad",
        sha256="0536c12780f5abbf03ad46fc37fafb99850cde146314dfa19cd43c29221450fd",
        env_var="SCGEN_KANG_100GENES_PATH",
        preprocess=True,
        showcase=("CD4 T cells", "NK cells"),
    ),
}


def dataset_fields(name_or_path) -> dict:
    """The config fields a registered dataset sets; nothing for a user's own file."""
    info = DATASETS.get(str(name_or_path))
    return info.config_fields() if info else {}


def showcase_types(name_or_path, obs: pd.DataFrame, config) -> list[str]:
    """The held-out types a quick run shows: the registry's, else the two largest types
    the hold-out rule allows (a user's own file)."""
    info = DATASETS.get(str(name_or_path))
    if info and info.showcase:
        return list(info.showcase)
    allowed, _ = holdable_cell_types(obs, config)
    sizes = obs[config.cell_type_key].astype(str).value_counts()
    return sorted(allowed, key=lambda t: (-sizes[t], t))[:2]


def data_checksum(path: str | Path) -> str:
    """sha256 of a data file (cached while its size and modification time stay the same)."""
    if not path or not Path(path).is_file():
        return "unknown"
    stat = Path(path).stat()
    return _checksum(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _checksum(path: str, size: int, mtime_ns: int) -> str:
    return sha256sum(path)


def sha256sum(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_path(name_or_path: str | Path, path: str | Path | None = None) -> Path:
    """Find a dataset file.

    A named dataset resolves, in order: the explicit ``path``, its environment
    variable, the project's ``data/`` cache, ``../shared/data/``, and finally a
    download of the public original (checked by sha256) into ``data/``.
    Anything else is taken as a path to an ``.h5ad`` file.
    """
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"explicit data path {str(path)!r} does not exist")
        return path
    name = str(name_or_path)
    if name not in DATASETS:
        candidate = Path(name).expanduser()
        if candidate.exists():
            return candidate
        raise FileNotFoundError(
            f"{name!r} is neither a known dataset ({sorted(DATASETS)}) nor an existing file"
        )
    info = DATASETS[name]
    from_env = os.environ.get(info.env_var)
    if from_env:
        if not Path(from_env).exists():
            raise FileNotFoundError(f"${info.env_var}={from_env!r} does not exist")
        return Path(from_env)
    for folder in (CACHE_DIR, SHARED_DATA):
        if (folder / info.filename).exists():
            return folder / info.filename
    if info.url is None:
        raise FileNotFoundError(
            f"dataset {name!r} ({info.filename}) not found in {CACHE_DIR} or {SHARED_DATA}, "
            f"and it has no public download; set ${info.env_var}"
        )
    return download(info, CACHE_DIR / info.filename)


def download(info: Dataset, target: Path) -> Path:
    """Download ``info.url`` to ``target`` and verify its sha256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    urllib.request.urlretrieve(info.url, partial)
    found = sha256sum(partial)
    if found != info.sha256:
        partial.unlink()
        raise OSError(f"download of {info.url} has sha256 {found}, expected {info.sha256}")
    partial.replace(target)
    return target


def dense(X) -> np.ndarray:
    """A float32 dense copy of an AnnData matrix (sparse or not)."""
    if sparse.issparse(X):
        X = X.toarray()
    return np.asarray(X, dtype=np.float32)


def looks_like_counts(X, sample: int = 20000, seed: int = 0) -> bool:
    """True when the stored values are non-negative integers (raw UMI counts)."""
    values = X.data if sparse.issparse(X) else np.asarray(X).ravel()
    if values.size == 0:
        return False
    rng = np.random.default_rng(seed)
    picked = values if values.size <= sample else rng.choice(values, sample, replace=False)
    return bool(np.all(picked >= 0) and np.all(np.mod(picked, 1) == 0))


def looks_log_normalised(X) -> bool:
    """True for non-negative, non-integer data with a log-scale maximum (< 50)."""
    values = X.data if sparse.issparse(X) else np.asarray(X).ravel()
    if values.size == 0:
        return False
    return bool(values.min() >= 0 and values.max() < 50 and not looks_like_counts(X))


def preprocess(adata: ad.AnnData, n_top_genes: int = 2000, min_genes: int | None = None,
               min_cells: int = 3, target_sum: float = 1e4) -> ad.AnnData:
    """Filter, normalise, log1p and keep highly variable genes, as scGen's paper did.

    ``min_genes`` (genes detected for a cell to be kept) defaults to 200, the
    usual whole-transcriptome threshold, or to a twentieth of the genes for
    panels smaller than 4,000 genes.  Raw counts are kept in
    ``layers['counts']``.  Data that is already log-normalised is never logged
    twice: only the gene selection is applied.
    """
    import scanpy as sc  # here, not at the top: the runner's command line never needs it

    adata = adata.copy()
    if min_genes is None:
        min_genes = min(200, max(1, adata.n_vars // 20))
    sc.pp.filter_cells(adata, min_genes=min_genes)
    if adata.n_obs == 0:
        raise ValueError(f"no cell has {min_genes} genes detected; lower min_genes")
    sc.pp.filter_genes(adata, min_cells=min_cells)
    if looks_like_counts(adata.X):
        adata.layers["counts"] = adata.X.copy()
        sc.pp.normalize_total(adata, target_sum=target_sum)
        sc.pp.log1p(adata)
    elif looks_log_normalised(adata.X):
        warnings.warn("data already looks log-normalised: skipping normalise and log1p")
    else:
        raise ValueError(
            "X is neither raw counts (non-negative integers) nor log-normalised "
            "(non-negative, max < 50); cannot preprocess it safely"
        )
    n_top_genes = min(n_top_genes, adata.n_vars)
    sc.pp.highly_variable_genes(adata, n_top_genes=n_top_genes)
    return adata[:, adata.var["highly_variable"]].copy()


def as_log_expression(X: np.ndarray) -> np.ndarray:
    """``X`` with its negative entries set to 0, as float32: what every prediction returns.

    Log-expression is never negative, but arithmetic on it can be (a decoded change,
    a shift in gene or PCA space): a third to a half of the entries of the unclipped
    predictions were below 0 (docs/beyond.md). Tools such as cell-eval refuse those,
    and so does :func:`check_expression`; the metrics score what this returns.
    """
    return np.maximum(np.asarray(X, dtype=np.float32), np.float32(0))


def check_expression(X, what: str = "X") -> None:
    """Raise a clear error unless ``X`` is finite, non-negative, log-scale expression.

    Used at every door (load, split, train, predict): scGen's arithmetic on
    raw counts, un-logged normalised values or NaNs runs without error and
    returns nonsense, so each is refused here, naming the fix.
    """
    if X is None:
        raise ValueError(f"{what} is missing (no expression matrix); scGen needs one")
    dtype = X.dtype
    if dtype == bool or not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise TypeError(f"{what} has dtype {dtype}; scGen needs numbers (float32 or float64): "
                        f"convert with adata.X = adata.X.astype('float32')")
    values = X.data if sparse.issparse(X) else np.asarray(X)
    if values.size == 0:
        return
    finite = np.isfinite(values)
    if not finite.all():
        raise ValueError(f"{what} holds {int((~finite).sum())} NaN or Inf values; "
                         "remove or impute them before training or predicting")
    low, high = float(values.min()), float(values.max())
    if low < 0:
        raise ValueError(
            f"{what} holds negative values (min {low:.3g}); scGen expects log-normalised "
            "expression (non-negative): pass unscaled log1p values, not z-scores")
    if looks_like_counts(X):
        raise ValueError(
            f"{what} holds raw counts (integer values); scGen expects log-normalised data: "
            "preprocess it first (data.load(..., preprocess_counts=True); config: preprocess=True)")
    if high > LOG_SCALE_MAX:
        raise ValueError(
            f"{what} reaches {high:.4g}: it looks normalised but not log-transformed "
            f"(log-scale data stay below {LOG_SCALE_MAX:g}); apply sc.pp.log1p(adata) first")


def check_labels(adata: ad.AnnData, key: str) -> pd.Series:
    """``obs[key]`` as strings, refusing a missing column or missing labels."""
    if key not in adata.obs:
        raise KeyError(f"obs column {key!r} not found; available columns: {list(adata.obs.columns)}")
    column = adata.obs[key]
    missing = column.isna() | column.astype(str).str.strip().str.lower().isin(["", "nan", "none"])
    if missing.any():
        raise ValueError(
            f"obs[{key!r}] has {int(missing.sum())} cells without a label (NaN or empty); "
            f"drop them (adata = adata[adata.obs[{key!r}].notna()].copy()) or label them")
    return column.astype(str)


def check_anndata(adata: ad.AnnData, condition_key: str, cell_type_key: str,
                  control_label: str, stimulated_label: str) -> None:
    """Raise a clear error for input scGen cannot use; say what exists instead."""
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"AnnData is empty ({adata.n_obs} cells x {adata.n_vars} genes)")
    conditions = set(check_labels(adata, condition_key))
    check_labels(adata, cell_type_key)
    for label, role in ((control_label, "control"), (stimulated_label, "stimulated")):
        if label not in conditions:
            raise ValueError(
                f"{role} label {label!r} not found in obs[{condition_key!r}]; "
                f"labels present: {sorted(conditions)}"
            )
    check_names(adata)
    check_expression(adata.X)


def check_names(adata: ad.AnnData) -> None:
    """Cell and gene names must be unique: genes are matched by name."""
    for axis, names, fix in (("obs", adata.obs_names, "obs_names_make_unique"),
                             ("var", adata.var_names, "var_names_make_unique")):
        if not names.is_unique:
            duplicated = names[names.duplicated()].unique()[:5]
            raise ValueError(
                f"{axis} names are not unique (e.g. {list(duplicated)}); call adata.{fix}()"
                + (" or keep one row per gene" if axis == "var" else ""))


def read_h5ad(file: Path) -> ad.AnnData:
    """``anndata.read_h5ad`` with an error that names the file when it is not one."""
    if file.is_dir():
        raise IsADirectoryError(f"{str(file)!r} is a folder, not an .h5ad file")
    try:
        with warnings.catch_warnings():  # old files keep neighbors in uns; anndata moves them
            warnings.filterwarnings("ignore", message="Moving element from .uns",
                                    category=FutureWarning)
            return ad.read_h5ad(file)
    except Exception as error:
        hint = (" (convert it first: scanpy.read_csv / read_10x_mtx / read_loom, then "
                "adata.write_h5ad)" if file.suffix.lower() != ".h5ad" else "")
        raise ValueError(f"{str(file)!r} is not a readable .h5ad file{hint}: "
                         f"{type(error).__name__}: {error}") from None


def load(name_or_path: str | Path = "kang", *, path: str | Path | None = None,
         condition_key: str = "condition", cell_type_key: str = "cell_type",
         control_label: str = "control", stimulated_label: str = "stimulated",
         preprocess_counts: bool = False, n_top_genes: int = 2000) -> ad.AnnData:
    """Load a dataset by name (``kang``, ``kang_counts``, ``kang_100genes``) or path.

    Raw counts are refused unless ``preprocess_counts`` is set, in which case
    they are preprocessed with :func:`preprocess`.  The result is validated with
    :func:`check_anndata`.
    """
    file = resolve_path(name_or_path, path)
    adata = read_h5ad(file)
    adata.uns["source_file"] = str(file)
    adata.uns["source_sha256"] = data_checksum(file)  # what the training store keys on
    if adata.X is None:
        raise ValueError(f"{file.name} has no expression matrix (X is empty)")
    if preprocess_counts:
        check_names(adata)
        adata = preprocess(adata, n_top_genes=n_top_genes)
    elif looks_like_counts(adata.X):
        raise ValueError(
            f"{file.name} holds raw counts (integer values); scGen expects "
            "log-normalised data: load it with preprocess_counts=True "
            "(config: preprocess=True)"
        )
    check_anndata(adata, condition_key, cell_type_key, control_label, stimulated_label)
    return adata


def load_for(config) -> ad.AnnData:
    """:func:`load` with the dataset, keys and labels of a :class:`ScGenConfig`."""
    return load(config.dataset, condition_key=config.condition_key,
                cell_type_key=config.cell_type_key, control_label=config.control_label,
                stimulated_label=config.stimulated_label,
                preprocess_counts=config.preprocess, n_top_genes=config.n_top_genes)


@dataclass
class Split:
    """The hold-out split of docs/design.md.

    train        every cell of the two conditions except the held-out type's stimulated cells
    ctrl_target  the held-out type's control cells (input at prediction time)
    truth        the held-out type's stimulated cells (scoring only)
    """

    train: ad.AnnData
    ctrl_target: ad.AnnData
    truth: ad.AnnData


def split_held_out(adata: ad.AnnData, config) -> Split:
    """Hold out ``config.held_out_cell_type``'s stimulated cells; cells of any third
    condition are left out (with a warning)."""
    check_anndata(adata, config.condition_key, config.cell_type_key,
                  config.control_label, config.stimulated_label)
    cell_type = check_labels(adata, config.cell_type_key)
    condition = check_labels(adata, config.condition_key)
    target = config.held_out_cell_type
    problem = hold_out_problem(adata.obs, config, target)
    if problem:
        raise ValueError(problem)
    is_target = (cell_type == target).to_numpy()
    is_ctrl = (condition == config.control_label).to_numpy()
    is_stim = (condition == config.stimulated_label).to_numpy()
    held_out = is_target & is_stim
    other = condition[~(is_ctrl | is_stim)].value_counts()
    if len(other):  # e.g. a second infection: not part of this control -> stimulated response
        warnings.warn(f"{int(other.sum())} cells of other conditions left out of training "
                      f"({', '.join(f'{k}: {v}' for k, v in other.items())}): the response is "
                      f"learnt from {config.control_label!r} to {config.stimulated_label!r} only")
    train = adata[(is_ctrl | is_stim) & ~held_out].copy()
    return Split(train=train,
                 ctrl_target=adata[is_target & is_ctrl].copy(),
                 truth=adata[held_out].copy())


# The one rule, for every dataset, of which cell types can be held out: at least this many
# cells in each condition (the control cells are the prediction's input, the stimulated
# ones the truth its variance and DEGs are scored on), and some other cell type seen in
# both conditions (delta is learnt from such types).
MIN_CELLS_TO_HOLD_OUT = 10


def hold_out_problem(obs: pd.DataFrame, config, cell_type: str) -> str | None:
    """Why ``cell_type`` cannot be held out of the cells ``obs`` describes, or None."""
    types = obs[config.cell_type_key].astype(str).to_numpy()
    condition = obs[config.condition_key].astype(str).to_numpy()
    if cell_type not in set(types):
        return (f"held-out cell type {cell_type!r} not in obs[{config.cell_type_key!r}]; "
                f"cell types present: {sorted(set(types))}")
    mine = types == cell_type
    n_ctrl = int((mine & (condition == config.control_label)).sum())
    n_stim = int((mine & (condition == config.stimulated_label)).sum())
    if n_ctrl == 0:
        return (f"held-out cell type {cell_type!r} has no {config.control_label!r} cells: "
                "scGen needs them as input to predict the stimulated state")
    if n_stim == 0:
        return (f"held-out cell type {cell_type!r} has no {config.stimulated_label!r} cells "
                "to score the prediction against")
    if min(n_ctrl, n_stim) < MIN_CELLS_TO_HOLD_OUT:
        return (f"held-out cell type {cell_type!r} has {n_ctrl} {config.control_label!r} and "
                f"{n_stim} {config.stimulated_label!r} cells; a type is held out only with at "
                f"least {MIN_CELLS_TO_HOLD_OUT} in each condition (data.MIN_CELLS_TO_HOLD_OUT)")
    others = ~mine
    both = (set(types[others & (condition == config.control_label)])
            & set(types[others & (condition == config.stimulated_label)]))
    if not both:
        return (f"once {cell_type!r} is held out, no other cell type is seen in both "
                f"{config.control_label!r} and {config.stimulated_label!r}: delta is learnt "
                "from such types, so another cell type must be seen stimulated and in control")
    return None


def holdable_cell_types(obs: pd.DataFrame, config) -> tuple[list[str], dict[str, str]]:
    """The cell types that can be held out (sorted), and why each other one cannot."""
    types = sorted(set(obs[config.cell_type_key].astype(str)))
    problems = {t: hold_out_problem(obs, config, t) for t in types}
    return [t for t in types if not problems[t]], {t: p for t, p in problems.items() if p}


def obs_of(path: Path) -> pd.DataFrame:
    """The cell annotations of a data file, read without loading its matrix."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            adata = ad.read_h5ad(path, backed="r")
        except Exception:
            return read_h5ad(Path(path)).obs  # names the file when it is not an h5ad
    try:
        return adata.obs.copy()
    finally:
        adata.file.close()


def holdable_types_of(dataset: str = "kang") -> list[str]:
    """Every cell type of a registered dataset that the hold-out rule allows, read from its
    file (the list a study over "every type" uses; no list of types lives in code)."""
    from .config import ScGenConfig

    config = ScGenConfig(dataset=dataset).replace(**DATASETS[dataset].config_fields())
    return holdable_cell_types(obs_of(resolve_path(dataset)), config)[0]


def held_out_types(obs: pd.DataFrame, config, chosen="all") -> list[str]:
    """The cell types a stage holds out in turn: ``"all"`` = every type the rule allows
    (the others are named in a warning), ``"default"`` = the dataset's showcase types
    (:func:`showcase_types`), or the ``chosen`` list, each checked."""
    if chosen == "default":
        chosen = showcase_types(config.dataset, obs, config)
    if chosen == "all":
        allowed, refused = holdable_cell_types(obs, config)
        if refused:
            warnings.warn(f"held out: {len(allowed)} of {len(allowed) + len(refused)} cell types; "
                          + "; ".join(refused.values()), stacklevel=2)
        if not allowed:
            raise ValueError("no cell type can be held out: " + "; ".join(refused.values()))
        return allowed
    if isinstance(chosen, str) or not isinstance(chosen, (list, tuple)) or not chosen:
        raise ValueError(f"held_out_cell_types must be 'all' or a non-empty list of cell "
                         f"types, got {chosen!r}")
    problems = [p for p in (hold_out_problem(obs, config, str(t)) for t in chosen) if p]
    if problems:
        raise ValueError("; ".join(problems))
    return [str(t) for t in chosen]


def balance(labels, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
    """Indices that resample every label *with replacement* to the same number of cells.

    Parameters
    ----------
    labels : array-like of shape (n_cells,)
    rng : numpy Generator (seeded by the caller)
    size : about how many indices in all; None = every label to the largest label's size

    Returns
    -------
    np.ndarray of shape (n_labels * per_label,), positions into ``labels``, where
    per_label is the largest label's size, or ceil(size / n_labels) when ``size`` is given.
    A label with a single cell is repeated; that is what "balanced" means here.
    """
    labels = np.asarray(labels).astype(str)
    if labels.size == 0:
        raise ValueError("cannot balance an empty set of cells")
    names, counts = np.unique(labels, return_counts=True)
    per_label = counts.max() if size is None else -(-int(size) // names.size)
    picks = [rng.choice(np.flatnonzero(labels == name), size=per_label, replace=True)
             for name in names]
    return np.concatenate(picks)


def cell_counts(adata: ad.AnnData, config) -> pd.DataFrame:
    """Cells per cell type and condition, with totals."""
    table = pd.crosstab(adata.obs[config.cell_type_key].astype(str),
                        adata.obs[config.condition_key].astype(str), margins=True,
                        margins_name="total")
    return table
