"""Training: Adam, early stopping, per-epoch history, checkpoints.

The whole training matrix stays resident as one tensor on the device; a batch
is an index slice, so there is no per-cell Python work in the loop.
"""
from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Callable

import anndata as ad
import numpy as np
import torch
from tqdm.auto import tqdm

from .config import ScGenConfig
from .data import balance, check_expression, check_labels, check_names, dense
from .model import ScGenModule, TrainedModel, pick_device

EpochCallback = Callable[[int, dict], None]
PIECES = ("loss", "reconstruction", "kl")  # what module.loss returns, averaged per epoch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def limit_threads(n: int | None) -> None:
    """Use ``n`` CPU threads in torch, numba (scanpy's Wilcoxon test) and BLAS/OpenMP.

    Setting torch's alone does not hold: once numba's parallel code has run (in
    :func:`experiment.prepare`), the shared OpenMP runtime is back at one thread
    per core.  :func:`train` and :func:`experiment.prepare` call this with
    ``config.num_threads``; None leaves every setting as it is.
    """
    if n is None:
        return
    torch.set_num_threads(n)
    try:
        import numba
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n)
    except ImportError:
        pass


def check_writable(path: Path) -> None:
    """Fail before training, not after it, when a checkpoint could not be written there."""
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint_path {str(path)!r} is a folder; give a file name "
                                f"such as {str(path / 'model.pt')!r}")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise PermissionError(f"checkpoint_path {str(path)!r}: {str(folder)!r} is not a writable folder")


def make_optimizer(module: torch.nn.Module, config: ScGenConfig) -> torch.optim.Optimizer:
    # At batch 32 the Adam step, not the matrix products, dominates on a CPU;
    # the fused kernel is several times faster than the default per-tensor loop.
    kwargs = dict(lr=config.learning_rate, weight_decay=config.weight_decay)
    try:
        return torch.optim.Adam(module.parameters(), fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(module.parameters(), foreach=True, **kwargs)


@torch.no_grad()
def evaluate_loss(module: ScGenModule, X: torch.Tensor, chunk: int = 1024) -> dict[str, float]:
    """Loss pieces on ``X`` in eval mode (running batch-norm stats, no dropout)."""
    was_training = module.training
    module.eval()
    sums = {"loss": 0.0, "reconstruction": 0.0, "kl": 0.0}
    for start in range(0, X.shape[0], chunk):
        batch = X[start:start + chunk]
        for name, value in module.loss(batch).items():
            sums[name] += float(value) * batch.shape[0]
    module.train(was_training)
    return {name: value / max(X.shape[0], 1) for name, value in sums.items()}


def checkpoint_file(path: str | Path, epoch: int) -> str:
    """``path`` with ``{epoch}`` (if any) replaced by ``epoch``."""
    return str(path).replace("{epoch}", str(epoch))


def train(adata: ad.AnnData, config: ScGenConfig, *, callback: EpochCallback | None = None,
          checkpoint_path: str | Path | None = None, progress: bool = True) -> TrainedModel:
    """Train scGen's autoencoder on ``adata`` (log-normalised; the training split).

    A ``validation_fraction`` of cells is held back for early stopping
    (``early_stopping_patience`` epochs without improvement, an improvement being
    a validation loss below the best by ``early_stopping_min_delta`` of it).  With
    ``keep_best`` the weights of the best validation epoch are restored at the
    end; otherwise the last epoch's weights are kept (scvi-tools' behaviour).

    ``callback(epoch, record)`` is called after every epoch with the history
    record (keys: epoch, loss, reconstruction, kl, learning_rate, val_loss,
    val_reconstruction, val_kl, seconds).  Checkpoints go to ``checkpoint_path``
    every ``checkpoint_every`` epochs and at the end; with ``{epoch}`` in the
    path, each epoch's goes to its own file and all are kept.
    """
    if adata.n_obs < 2:
        raise ValueError(f"need at least 2 training cells, got {adata.n_obs}")
    check_expression(adata.X, "training data X")
    check_names(adata)
    cell_types = check_labels(adata, config.cell_type_key).to_numpy()
    if checkpoint_path is not None:
        check_writable(Path(checkpoint_path))
    seed_everything(config.seed)
    limit_threads(config.num_threads)
    # Adam's moment estimates for genes whose output stays at zero (a ReLU output)
    # decay into denormal floats, which CPUs handle tens of times slower: flush
    # them to zero (a CPU-only, process-wide setting; their values are < 1e-38)
    torch.set_flush_denormal(True)
    device = pick_device(config.device)
    X = torch.from_numpy(dense(adata.X)).to(device)
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(adata.n_obs)
    n_val = int(round(config.validation_fraction * adata.n_obs))
    if 0 < n_val and adata.n_obs - n_val < 2:
        n_val = 0
    val_index, train_index = order[:n_val], order[n_val:]
    X_val = X[torch.from_numpy(val_index).to(device)]
    cell_types = cell_types[train_index]

    module = ScGenModule(adata.n_vars, config).to(device)
    optimizer = make_optimizer(module, config)
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
                if config.learning_rate_schedule == "cosine" else None)
    model = TrainedModel(module, config, list(map(str, adata.var_names)))
    generator = torch.Generator().manual_seed(config.seed)
    best_loss, improved, since_best = float("inf"), float("inf"), 0

    bar = tqdm(range(1, config.epochs + 1), desc="training", unit="epoch", disable=not progress)
    for epoch in bar:
        tic = time.perf_counter()
        if config.balance_training:
            # same number of cells per epoch as unbalanced training: only the mix changes
            epoch_index = train_index[balance(cell_types, rng, size=train_index.size)]
            epoch_index = epoch_index[rng.permutation(epoch_index.size)]
            batches = torch.from_numpy(epoch_index).to(device)
        else:
            batches = torch.from_numpy(train_index).to(device)[
                torch.randperm(train_index.size, generator=generator).to(device)]
        module.train()
        # the loss pieces are summed on the device and read back once per epoch:
        # no per-batch host synchronisation, so a GPU is never kept waiting
        sums = torch.zeros(len(PIECES), device=device)
        seen = 0
        for start in range(0, batches.numel(), config.batch_size):
            index = batches[start:start + config.batch_size]
            if index.numel() < 2:  # batch norm cannot train on one cell
                continue
            pieces = module.loss(X[index])
            optimizer.zero_grad(set_to_none=True)
            pieces["loss"].backward()
            optimizer.step()
            sums += torch.stack([pieces[name].detach() for name in PIECES]) * index.numel()
            seen += index.numel()
        record = {"epoch": epoch, **dict(zip(PIECES, (sums / seen).tolist())),
                  "learning_rate": optimizer.param_groups[0]["lr"]}
        if schedule is not None:
            schedule.step()
        if n_val:
            record.update({f"val_{k}": v for k, v in evaluate_loss(module, X_val).items()})
        record["seconds"] = time.perf_counter() - tic
        model.history.append(record)
        if not np.isfinite(record["loss"]):
            raise FloatingPointError(
                f"training loss became {record['loss']} at epoch {epoch}; "
                "lower learning_rate or check the input data"
            )
        bar.set_postfix(loss=f"{record['loss']:.1f}",
                        val=f"{record.get('val_loss', float('nan')):.1f}")
        if callback is not None:
            callback(epoch, record)

        monitored = record.get("val_loss", record["loss"])
        if monitored < best_loss:
            best_loss, model.best_epoch = monitored, epoch
            model.best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        # patience counts the epochs since the last improvement by the relative margin
        if monitored < improved * (1 - config.early_stopping_min_delta):
            improved, since_best = monitored, 0
        else:
            since_best += 1
        if checkpoint_path and config.checkpoint_every and epoch % config.checkpoint_every == 0:
            model.save(checkpoint_file(checkpoint_path, epoch), epoch)
        if config.early_stopping_patience and since_best >= config.early_stopping_patience:
            break
    bar.close()

    if config.keep_best and model.best_state is not None:
        module.load_state_dict(model.best_state)
    module.eval()
    if checkpoint_path:
        model.save(checkpoint_file(checkpoint_path, len(model.history)))
    return model
