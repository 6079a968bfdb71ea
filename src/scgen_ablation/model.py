"""The torch module: one class whose switches define the ablation.

Encoder  genes -> 800 -> 800 -> (mu, log sigma^2) of a 100-d latent
Decoder  100 -> 800 -> 800 -> genes
Each hidden block: Linear (no bias) -> BatchNorm -> LeakyReLU -> Dropout.

``variational=False`` gives the plain autoencoder of stage 01 (z = mu, no KL).
"""
from __future__ import annotations

import torch
from torch import nn


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
