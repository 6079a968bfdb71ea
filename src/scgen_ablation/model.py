"""The torch module: one class whose switches define the ablation.

Encoder  genes -> 800 -> 800 -> (mu, log sigma^2) of a 100-d latent
Decoder  100 -> 800 -> 800 -> genes
Each hidden block: Linear (no bias) -> BatchNorm -> LeakyReLU -> Dropout.

``variational=False`` gives the plain autoencoder of stage 01 (z = mu, no KL).
"""
from __future__ import annotations

import copy
import os
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import torch
from torch import nn

from .config import ScGenConfig


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; anything else is used as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def hidden_block(n_in: int, n_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, n_out, bias=False),
        nn.BatchNorm1d(n_out),
        nn.LeakyReLU(),
        nn.Dropout(dropout),
    )


def mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    return nn.Sequential(*[hidden_block(a, b, dropout) for a, b in zip(sizes, sizes[1:])])


class ScGenModule(nn.Module):
    """Autoencoder or VAE over log-normalised expression.

    Parameters
    ----------
    n_genes : number of input (and output) genes
    config : ScGenConfig (hidden_sizes, latent_dim, dropout, variational,
        reconstruction_loss, output_activation, kl_weight)
    """

    def __init__(self, n_genes: int, config):
        super().__init__()
        self.n_genes = n_genes
        self.variational = config.variational
        self.kl_weight = config.kl_weight
        self.reconstruction_loss = config.reconstruction_loss
        hidden = list(config.hidden_sizes)
        self.encoder = mlp([n_genes, *hidden], config.dropout)
        self.mean = nn.Linear(hidden[-1], config.latent_dim)
        self.log_var = nn.Linear(hidden[-1], config.latent_dim) if self.variational else None
        self.decoder = mlp([config.latent_dim, *hidden[::-1]], config.dropout)
        self.output = nn.Linear(hidden[0], n_genes)
        self.output_activation = nn.ReLU() if config.output_activation == "relu" else nn.Identity()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(n, genes) -> mu (n, latent) and log variance (n, latent) or None."""
        h = self.encoder(x)
        return self.mean(h), (self.log_var(h) if self.variational else None)

    def sample(self, mu: torch.Tensor, log_var: torch.Tensor | None) -> torch.Tensor:
        """Reparameterised draw z = mu + sigma * eps (mu itself when deterministic)."""
        if log_var is None:
            return mu
        return mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(n, latent) -> (n, genes)."""
        return self.output_activation(self.output(self.decoder(z)))

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss pieces by name, each averaged over the batch.

        loss = reconstruction + 0.5 * kl_weight * KL(q(z|x) || N(0, I)), with
        reconstruction = 0.5 * sum of squared errors ("mse") or sum of absolute
        errors ("l1") over genes.
        """
        mu, log_var = self.encode(x)
        x_hat = self.decode(self.sample(mu, log_var))
        if self.reconstruction_loss == "mse":
            reconstruction = 0.5 * (x - x_hat).pow(2).sum(dim=1).mean()
        else:
            reconstruction = (x - x_hat).abs().sum(dim=1).mean()
        if log_var is None:
            kl = torch.zeros((), device=x.device)
        else:
            kl = 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(dim=1).mean()
        total = reconstruction + 0.5 * self.kl_weight * kl
        return {"loss": total, "reconstruction": reconstruction, "kl": kl}


@dataclass
class TrainedModel:
    """A module together with what is needed to use and reload it."""

    module: ScGenModule
    config: ScGenConfig
    genes: list[str]
    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    # weights of the best validation epoch, so that best-vs-last can be compared
    # on one training run (saved only by the training store: ``with_best``)
    best_state: dict | None = field(default=None, repr=False)
    train_seconds: float | None = None  # how long training took (where it was trained)
    reused: bool = False  # loaded from the training store rather than trained here
    data_fingerprint: str | None = None  # the training matrix's hash (store.fingerprint)
    trained_on: str | None = None  # the device type it was trained on ("cpu", "cuda")

    def with_weights(self, state: dict) -> "TrainedModel":
        """A copy of this model carrying other weights (e.g. ``best_state``)."""
        module = copy.deepcopy(self.module)
        module.load_state_dict(state)
        return TrainedModel(module.eval(), self.config, self.genes, self.history, self.best_epoch,
                            train_seconds=self.train_seconds, reused=self.reused,
                            data_fingerprint=self.data_fingerprint, trained_on=self.trained_on)

    def for_prediction(self, config: ScGenConfig) -> "TrainedModel":
        """This training as ``config`` uses it: the best epoch's weights with ``keep_best``."""
        if config.keep_best and self.best_state is not None:
            model = self.with_weights(self.best_state)
            model.best_state = self.best_state
        else:
            model = copy.copy(self)
        model.config = config
        return model

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

    def save(self, path: str | Path, epoch: int | None = None, with_best: bool = False) -> Path:
        """Write weights + config + genes + history atomically (temp file, then rename).

        ``with_best`` adds the best validation epoch's weights when that was
        not the last epoch (the training store keeps both).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "state_dict": self.module.state_dict(),
            "config": self.config.to_dict(),
            "genes": self.genes,
            "history": self.history,
            "epoch": len(self.history) if epoch is None else epoch,
            "best_epoch": self.best_epoch,
            "train_seconds": self.train_seconds,
            "device": self.trained_on or self.device.type,
            "data_fingerprint": self.data_fingerprint,
        }
        if with_best and self.best_state is not None and self.best_epoch != len(self.history):
            payload["best_state"] = self.best_state
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
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {str(path)!r} is not a file")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:  # weights_only refuses anything but tensors and data
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ValueError(
                f"checkpoint {str(path)!r} was refused by the safe loader (weights_only=True): "
                "it is not a scgen_ablation checkpoint, or it holds objects other than tensors "
                f"and plain data; never load it with weights_only=False ({reason[:200]})") from None
        except Exception as error:  # truncated, foreign or random bytes fail in many ways
            raise ValueError(f"checkpoint {str(path)!r} cannot be read (truncated or not a "
                             f"torch file?): {type(error).__name__}: {error}") from None
        if not isinstance(payload, dict):
            raise ValueError(f"{path} is not a scgen_ablation checkpoint (not a dict)")
        missing = {"state_dict", "config", "genes"} - set(payload)
        if missing:
            raise ValueError(f"{path} is not a scgen_ablation checkpoint (missing {sorted(missing)})")
        try:
            config = ScGenConfig.from_dict(payload["config"])
        except (KeyError, ValueError, TypeError) as error:
            raise ValueError(f"{path}: its saved config is not a valid config: "
                             f"{error.args[0] if error.args else error}") from None
        module = ScGenModule(len(payload["genes"]), config)
        try:
            module.load_state_dict(payload["state_dict"])
        except RuntimeError as error:
            raise ValueError(
                f"checkpoint {path} does not match the architecture its config describes: {error}"
            ) from None
        module.to(pick_device(device)).eval()
        model = cls(module, config, list(payload["genes"]), list(payload.get("history", [])),
                    payload.get("best_epoch"), train_seconds=payload.get("train_seconds"),
                    data_fingerprint=payload.get("data_fingerprint"),
                    trained_on=payload.get("device"))
        best = payload.get("best_state")
        if best is None and model.best_epoch is not None and model.best_epoch == len(model.history):
            best = module.state_dict()  # the last epoch was the best
        if best is not None:
            model.best_state = {k: v.to(model.device) for k, v in best.items()}
        return model
