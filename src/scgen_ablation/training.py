"""Training: Adam, early stopping, per-epoch history, checkpoints.

The whole training matrix stays resident as one tensor on the device; a batch
is an index slice, so there is no per-cell Python work in the loop.
"""
from __future__ import annotations

import copy
import os
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import anndata as ad
import numpy as np
import torch
from tqdm.auto import tqdm

from .config import ScGenConfig
from .data import balance, dense, looks_like_counts
from .model import ScGenModule, pick_device

EpochCallback = Callable[[int, dict], None]


@dataclass
class TrainedModel:
    """A module together with what is needed to use and reload it."""

    module: ScGenModule
    config: ScGenConfig
    genes: list[str]
    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    # weights of the best validation epoch, kept in memory (not saved) so that
    # best-vs-last can be compared on one training run
    best_state: dict | None = field(default=None, repr=False)

    def with_weights(self, state: dict) -> "TrainedModel":
        """A copy of this model carrying other weights (e.g. ``best_state``)."""
        module = copy.deepcopy(self.module)
        module.load_state_dict(state)
        return TrainedModel(module.eval(), self.config, self.genes, self.history, self.best_epoch)

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def check_genes(self, adata: ad.AnnData) -> None:
        """Raise if ``adata`` does not have exactly the genes the model was trained on."""
        genes = list(map(str, adata.var_names))
        if genes != self.genes:
            missing = [g for g in self.genes if g not in set(genes)][:5]
            extra = [g for g in genes if g not in set(self.genes)][:5]
            raise ValueError(
                f"genes differ from the trained model's ({len(genes)} given, "
                f"{len(self.genes)} trained; missing e.g. {missing}, unexpected e.g. "
                f"{extra}; same set in another order counts as different): "
                "subset and order with adata[:, model.genes]"
            )

    def save(self, path: str | Path, epoch: int | None = None) -> Path:
        """Write weights + config + genes + history atomically (temp file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "state_dict": self.module.state_dict(),
            "config": self.config.to_dict(),
            "genes": self.genes,
            "history": self.history,
            "epoch": len(self.history) if epoch is None else epoch,
            "best_epoch": self.best_epoch,
        }
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        os.close(handle)
        try:
            torch.save(payload, temporary)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "TrainedModel":
        """Load a checkpoint safely (``weights_only=True``: tensors and plain data only)."""
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        missing = {"state_dict", "config", "genes"} - set(payload)
        if missing:
            raise ValueError(f"{path} is not a scgen_ablation checkpoint (missing {sorted(missing)})")
        config = ScGenConfig.from_dict(payload["config"])
        module = ScGenModule(len(payload["genes"]), config)
        try:
            module.load_state_dict(payload["state_dict"])
        except RuntimeError as error:
            raise ValueError(
                f"checkpoint {path} does not match the architecture its config describes: {error}"
            ) from None
        module.to(pick_device(device)).eval()
        return cls(module, config, list(payload["genes"]), list(payload.get("history", [])),
                   payload.get("best_epoch"))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def train(adata: ad.AnnData, config: ScGenConfig, *, callback: EpochCallback | None = None,
          checkpoint_path: str | Path | None = None, progress: bool = True) -> TrainedModel:
    """Train scGen's autoencoder on ``adata`` (log-normalised; the training split).

    A ``validation_fraction`` of cells is held back for early stopping
    (``early_stopping_patience`` epochs without improvement).  With
    ``keep_best`` the weights of the best validation epoch are restored at the
    end; otherwise the last epoch's weights are kept (scvi-tools' behaviour).

    ``callback(epoch, record)`` is called after every epoch with the history
    record (keys: epoch, loss, reconstruction, kl, val_loss, val_reconstruction,
    val_kl, seconds).  Checkpoints go to ``checkpoint_path`` every
    ``checkpoint_every`` epochs and at the end.
    """
    if adata.n_obs < 2:
        raise ValueError(f"need at least 2 training cells, got {adata.n_obs}")
    if looks_like_counts(adata.X):
        raise ValueError(
            "training data holds raw counts (integer values); scGen expects "
            "log-normalised data: preprocess it first (data.preprocess / config.preprocess=True)"
        )
    seed_everything(config.seed)
    device = pick_device(config.device)
    X = torch.from_numpy(dense(adata.X)).to(device)
    if not torch.isfinite(X).all():
        raise ValueError("training data holds NaN or Inf values")
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(adata.n_obs)
    n_val = int(round(config.validation_fraction * adata.n_obs))
    if 0 < n_val and adata.n_obs - n_val < 2:
        n_val = 0
    val_index, train_index = order[:n_val], order[n_val:]
    X_val = X[torch.from_numpy(val_index).to(device)]
    cell_types = adata.obs[config.cell_type_key].astype(str).to_numpy()[train_index]

    module = ScGenModule(adata.n_vars, config).to(device)
    optimizer = make_optimizer(module, config)
    model = TrainedModel(module, config, list(map(str, adata.var_names)))
    generator = torch.Generator().manual_seed(config.seed)
    best_loss, since_best = float("inf"), 0

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
        sums = {"loss": 0.0, "reconstruction": 0.0, "kl": 0.0}
        seen = 0
        for start in range(0, batches.numel(), config.batch_size):
            index = batches[start:start + config.batch_size]
            if index.numel() < 2:  # batch norm cannot train on one cell
                continue
            pieces = module.loss(X[index])
            optimizer.zero_grad(set_to_none=True)
            pieces["loss"].backward()
            optimizer.step()
            for name in sums:
                sums[name] += float(pieces[name].detach()) * index.numel()
            seen += index.numel()
        record = {"epoch": epoch, **{name: value / seen for name, value in sums.items()}}
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
            best_loss, since_best, model.best_epoch = monitored, 0, epoch
            model.best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            since_best += 1
        if checkpoint_path and config.checkpoint_every and epoch % config.checkpoint_every == 0:
            model.save(checkpoint_path, epoch)
        if since_best >= config.early_stopping_patience:
            break
    bar.close()

    if config.keep_best and model.best_state is not None:
        module.load_state_dict(model.best_state)
    module.eval()
    if checkpoint_path:
        model.save(checkpoint_path)
    return model
