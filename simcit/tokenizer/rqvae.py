"""TIGER-style RQ-VAE baseline (Rajput et al. 2023): the reconstruction tokenizer SimCIT is
compared against.

x (one view, or several concatenated) -> MLP encoder -> z -> residual VQ (hard argmin per level,
straight-through estimator) -> q -> MLP decoder -> x_hat.
Loss = ||x - x_hat||^2 + sum_l ( ||sg(r_{l-1}) - e_l||^2 + beta ||r_{l-1} - sg(e_l)||^2 ).
Absent views enter the encoder as zeros (this baseline has no fusion to mask them out of) and
are left out of the reconstruction loss, so the model is never taught to output zeros for them.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from simcit.tokenizer.batch import ViewBatch
from simcit.tokenizer.config import RQVAEConfig
from simcit.tokenizer.outputs import LossOutput
from simcit.tokenizer.residual_quantizer import ResidualQuantizer


def _mlp(dims: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAETokenizer(nn.Module):
    kind = "rqvae"
    requires_training = True

    def __init__(self, config: RQVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.input_views = {name: config.views[name] for name in config.used_views}
        in_dim = sum(self.input_views.values())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.encoder = _mlp((in_dim, *config.hidden_dims, config.latent_dim))
            self.decoder = _mlp((config.latent_dim, *reversed(config.hidden_dims), in_dim))
            # Holds the codebooks, their k-means init and hard argmin; training is STE here.
            self.quantizer = ResidualQuantizer(config.levels, config.codebook_size, config.latent_dim)

    def _input(self, batch: ViewBatch) -> tuple[Tensor, Tensor]:
        x, mask = batch.concatenated(self.input_views)
        if not bool(mask.any(dim=1).all()):
            raise ValueError(f"every item needs at least one of the views {list(self.input_views)}")
        return x, mask

    def _quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Hard residual VQ. Returns q with straight-through gradient to z, codes [B, L] and the
        summed codebook + commitment loss (per item, mean over the batch)."""
        cb = self.quantizer.codebooks
        c_sq = cb.pow(2).sum(-1)
        r = z
        q = torch.zeros_like(z)
        vq_loss = z.new_zeros(())
        codes = []
        for level in range(self.config.levels):
            with torch.no_grad():
                k = torch.addmm(c_sq[level], r, cb[level].t(), beta=-1.0, alpha=2.0).argmax(dim=1)
            e = cb[level].index_select(0, k)
            vq_loss = vq_loss + (r.detach() - e).pow(2).sum(-1).mean() \
                + self.config.beta * (r - e.detach()).pow(2).sum(-1).mean()
            codes.append(k)
            q = q + e.detach()
            r = r - e.detach()
        q_st = z + (q - z).detach()  # straight-through: decoder gradient reaches the encoder
        return q_st, torch.stack(codes, dim=1), vq_loss

    def _losses(self, batch: ViewBatch) -> LossOutput:
        x, mask = self._input(batch)
        z = self.encoder(x)
        q, _, vq_loss = self._quantize(z)
        x_hat = self.decoder(q)
        recon = ((x_hat - x).pow(2) * mask).sum(-1).mean()
        loss = recon + vq_loss
        values = torch.stack([loss, recon, vq_loss]).detach().tolist()
        return LossOutput(loss, {"loss": values[0], "recon_loss": values[1], "vq_loss": values[2]})

    def forward(self, batch: ViewBatch) -> LossOutput:
        return self._losses(batch)

    def param_groups(self, lr: float, weight_decay: float = 0.0) -> list[dict]:
        """Optimizer parameter groups (codebooks without weight decay; they have their own loss)."""
        rest = [p for name, p in self.named_parameters() if name != "quantizer.codebooks"]
        return [{"params": rest, "lr": lr, "weight_decay": weight_decay},
                {"params": [self.quantizer.codebooks], "lr": lr, "weight_decay": 0.0}]

    @torch.no_grad()
    def validation_loss(self, batch: ViewBatch) -> LossOutput:
        return self._losses(batch)

    @torch.no_grad()
    def codes(self, batch: ViewBatch) -> Tensor:
        return self.quantizer.codes(self.latents(batch))

    @torch.no_grad()
    def latents(self, batch: ViewBatch) -> Tensor:
        return self.encoder(self._input(batch)[0])

    @torch.no_grad()
    def reconstruct(self, batch: ViewBatch) -> Tensor:
        """Decoder output from the HARD quantized latent [B, sum d]."""
        z = self.latents(batch)
        return self.decoder(self.quantizer(z, soft=False).quantized)

    @torch.no_grad()
    def init_codebooks(self, batch: ViewBatch) -> None:
        self.quantizer.init_from_kmeans(self.latents(batch), self.config.kmeans_iters, self.config.seed)
