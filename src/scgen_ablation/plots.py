"""Plots: each function returns a matplotlib Figure (notebooks show it, MLflow logs it)."""
from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scanpy as sc

from .data import dense
from .metrics import HEADLINE_METRICS, r2


def _scatter(predicted: np.ndarray, real: np.ndarray, genes, deg_index, what: str,
             title: str, n_labels: int = 10) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(predicted, real, s=4, c="0.6", label="all genes")
    ax.scatter(predicted[deg_index], real[deg_index], s=8, c="tab:red", label="top-100 DEGs")
    for i in deg_index[:n_labels]:
        ax.annotate(genes[i], (predicted[i], real[i]), fontsize=7)
    low, high = min(predicted.min(), real.min()), max(predicted.max(), real.max())
    ax.plot([low, high], [low, high], "k--", lw=0.8)
    ax.set_xlabel(f"predicted {what}")
    ax.set_ylabel(f"real stimulated {what}")
    ax.set_title(f"{title}\nR² all = {r2(predicted, real):.3f}, "
                 f"top-100 = {r2(predicted[deg_index], real[deg_index]):.3f}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def mean_scatter(result, title: str = "per-gene mean") -> plt.Figure:
    """Predicted vs real per-gene mean, R² in the title, top DEGs in red and labelled."""
    P, R = dense(result.prediction.X), dense(result.split.truth.X)
    return _scatter(P.mean(0), R.mean(0), list(result.split.truth.var_names),
                    result.deg_index, "mean", f"{result.config.held_out_cell_type}: {title}")


def variance_scatter(result, title: str = "per-gene variance") -> plt.Figure:
    """The same as :func:`mean_scatter` for per-gene variance."""
    P, R = dense(result.prediction.X), dense(result.split.truth.X)
    return _scatter(P.var(0), R.var(0), list(result.split.truth.var_names),
                    result.deg_index, "variance", f"{result.config.held_out_cell_type}: {title}")


def loss_curves(history: list[dict]) -> plt.Figure:
    """Training and validation loss per epoch, with reconstruction and KL separately."""
    table = pd.DataFrame(history)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for column in ("loss", "val_loss"):
        if column in table:
            axes[0].plot(table["epoch"], table[column], label=column)
    axes[0].set_xlabel("epoch"); axes[0].set_ylabel("loss"); axes[0].legend()
    axes[1].plot(table["epoch"], table["kl"], label="KL (train)")
    axes[1].set_xlabel("epoch"); axes[1].set_ylabel("KL"); axes[1].legend()
    kl = table["kl"].to_numpy(dtype=float)
    if kl.size and np.nanmin(kl) > 0 and np.nanmax(kl) > 20 * np.nanmedian(kl):
        axes[1].set_yscale("log")  # an early spike would flatten the rest of the curve
    fig.tight_layout()
    return fig


def umap(result, seed: int = 0) -> plt.Figure:
    """UMAP of the held-out type: control, real stimulated and predicted cells together."""
    key = result.config.condition_key
    parts = [result.split.ctrl_target, result.split.truth, result.prediction]
    labels = np.concatenate([p.obs[key].astype(str).to_numpy() for p in parts])
    cells = ad.AnnData(X=np.concatenate([dense(p.X) for p in parts]),
                       obs=pd.DataFrame({key: labels}, index=[f"c{i}" for i in range(labels.size)]))
    sc.pp.pca(cells, n_comps=min(30, cells.n_obs - 1, cells.n_vars - 1), random_state=seed)
    sc.pp.neighbors(cells, random_state=seed)
    sc.tl.umap(cells, random_state=seed)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    sc.pl.umap(cells, color=key, ax=ax, show=False,
               title=f"{result.config.held_out_cell_type}: control / real / predicted")
    fig.tight_layout()
    return fig


def strongest_deg_violin(result) -> plt.Figure:
    """Violin of the top DEG (ISG15 on Kang) in control, real and predicted cells."""
    gene = result.degs[0]
    i = result.split.truth.var_names.get_loc(gene)
    groups = {"control": dense(result.split.ctrl_target.X)[:, i],
              "real stimulated": dense(result.split.truth.X)[:, i],
              "predicted": dense(result.prediction.X)[:, i]}
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.violinplot(list(groups.values()), showmedians=True)
    ax.set_xticks(range(1, 4), list(groups))
    ax.set_ylabel(f"{gene} expression")
    ax.set_title(f"{result.config.held_out_cell_type}: strongest DEG {gene}")
    fig.tight_layout()
    return fig


def r2_bars(table: pd.DataFrame, metric_columns, group: str, title: str = "",
            markers: dict[str, str] | None = None) -> plt.Figure:
    """Grouped bars of R² values, one group per row of ``table[group]``.

    ``metric_columns`` are drawn as bars (with ``<column>_sd`` as error bars
    when present); ``markers`` maps a label to a column drawn as a short line
    across each group, e.g. ``{"gene-space arithmetic": "gene-space arithmetic"}``.
    """
    labels = list(table[group].astype(str))
    if len(labels) > 8:  # many groups: one row each, labels stay horizontal and legible
        return _r2_rows(table, labels, metric_columns, title, markers)
    x = np.arange(len(labels))
    width = 0.8 / len(metric_columns)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(labels) + 3), 4))
    values = [table[c].to_numpy(dtype=float) for c in metric_columns]
    for k, column in enumerate(metric_columns):
        sd = table[f"{column}_sd"] if f"{column}_sd" in table else None
        ax.bar(x + k * width, table[column], width, yerr=sd, label=column, capsize=2)
    styles = iter([("k", "--"), ("0.4", ":"), ("tab:red", "-.")])
    for label, column in (markers or {}).items():
        color, style = next(styles)
        values.append(table[column].to_numpy(dtype=float))
        for i, value in enumerate(table[column]):
            ax.hlines(value, x[i] - width / 2, x[i] + 0.8 - width / 2, colors=color,
                      linestyles=style, label=label if i == 0 else None)
    ax.set_xticks(x + 0.4 - width / 2, labels, rotation=30 if len(labels) > 4 else 0,
                  ha="right" if len(labels) > 4 else "center")
    ax.set_ylabel("R²")
    ax.set_ylim(_lower_limit(values), 1.0)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def _lower_limit(values) -> float:
    finite = np.concatenate(values)
    finite = finite[np.isfinite(finite)]
    return max(0.0, np.floor(finite.min() * 10) / 10 - 0.1) if finite.size else 0.0


def _r2_rows(table, labels, metric_columns, title, markers) -> plt.Figure:
    """``r2_bars`` for many groups: one panel per metric side by side, one bar per group,
    read top to bottom, labels once at the left; markers as ticks across each bar, and
    the legend below the panels, clear of the data and the title."""
    y = np.arange(len(labels))[::-1]
    n = len(metric_columns)
    fig, axes = plt.subplots(1, n, sharey=True, squeeze=False,
                             figsize=(2.6 * n + 3.2, 0.26 * len(labels) + 2.2))
    values = [table[c].to_numpy(dtype=float) for c in metric_columns]
    values += [table[c].to_numpy(dtype=float) for c in (markers or {}).values()]
    low = _lower_limit(values)
    handles = {}
    for ax, column in zip(axes[0], metric_columns):
        sd = table[f"{column}_sd"] if f"{column}_sd" in table else None
        ax.barh(y, table[column], 0.7, xerr=sd, capsize=2, color="tab:blue")
        styles = iter([("k", "--"), ("0.4", ":"), ("tab:red", "-.")])
        for label, marker in (markers or {}).items():
            color, style = next(styles)
            handles[label] = ax.vlines(table[marker], y - 0.4, y + 0.4, colors=color,
                                       linestyles=style, label=label)
        ax.set_xlim(low, 1.0)
        ax.set_title(str(column), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(y, labels, fontsize=8)
    fig.suptitle(title)
    if handles:
        fig.legend(list(handles.values()), list(handles), fontsize=8, loc="lower center",
                   ncol=len(handles), frameon=False)
    fig.tight_layout(rect=(0, 0.05 if handles else 0, 1, 1))
    return fig


def standard_figures(result, with_umap: bool = True) -> dict[str, plt.Figure]:
    """Every per-run figure, named for MLflow artifacts."""
    figures = {
        "mean_scatter.png": mean_scatter(result),
        "variance_scatter.png": variance_scatter(result),
        "loss_curves.png": loss_curves(result.model.history),
        "strongest_deg_violin.png": strongest_deg_violin(result),
    }
    if with_umap:
        figures["umap.png"] = umap(result, seed=result.config.seed)
    return figures


def beta_sweep(results: dict) -> plt.Figure:
    """Stage 03: final reconstruction vs KL per beta, and R² per beta."""
    betas = list(results)
    last = [results[b].model.history[-1] for b in betas]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].plot([r["kl"] for r in last], [r["reconstruction"] for r in last], "o-")
    for b, r in zip(betas, last):
        axes[0].annotate(f"β={b:g}", (r["kl"], r["reconstruction"]), fontsize=8,
                         xytext=(4, 4), textcoords="offset points")
    # KL spans many orders of magnitude across betas (1e12 at beta 0): a log axis
    # keeps every beta apart
    axes[0].set_xscale("log")
    axes[0].set_xlabel("KL (last epoch, log scale)"); axes[0].set_ylabel("reconstruction (last epoch)")
    axes[0].set_title("the reconstruction / KL trade-off")
    labels = [f"{b:g}" for b in betas]
    for metric in HEADLINE_METRICS:
        axes[1].plot(labels, [results[b].metrics[metric] for b in betas], "o-", label=metric)
    axes[1].set_xlabel("β (kl_weight)"); axes[1].set_ylabel("R²"); axes[1].set_ylim(0, 1)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def overview_umap(adata: ad.AnnData, keys: list[str], seed: int = 0) -> plt.Figure:
    """UMAP of all cells coloured by each of ``keys`` (e.g. condition, cell type)."""
    cells = adata.copy()
    sc.pp.pca(cells, n_comps=min(50, cells.n_obs - 1, cells.n_vars - 1), random_state=seed)
    sc.pp.neighbors(cells, random_state=seed)
    sc.tl.umap(cells, random_state=seed)
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4.5))
    for ax, key in zip(np.atleast_1d(axes), keys):
        sc.pl.umap(cells, color=key, ax=ax, show=False, title=key)
    fig.tight_layout()
    return fig


def qc_violins(adata: ad.AnnData, group_key: str) -> plt.Figure:
    """Genes detected and total expression per cell, per group."""
    X = adata.X
    detected = np.asarray((X > 0).sum(1)).ravel()
    total = np.asarray(X.sum(1)).ravel()
    groups = adata.obs[group_key].astype(str).to_numpy()
    names = sorted(set(groups))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    for ax, values, label in ((axes[0], detected, "genes detected"), (axes[1], total, "total expression")):
        ax.violinplot([values[groups == n] for n in names], showmedians=True)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right")
        ax.set_ylabel(label)
    fig.tight_layout()
    return fig
