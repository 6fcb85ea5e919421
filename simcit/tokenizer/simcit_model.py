"""SimCIT tokenizer (SPEC 2): view encoders -> attention fusion -> learnable residual quantizer,
trained with the multi-view contrastive loss plus the codeword regulariser. No decoder.

Precision: everything runs in fp32 except, when ``config.encoder_dtype == "bfloat16"``, the view
encoders (bf16 autocast: AMX / tensor cores; they hold ~3/4 of the FLOPs). The quantizer, fusion,
projection and loss always run in fp32, also inside a caller's autocast region.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from simcit.tokenizer.attention_fusion import AttentionFusion
from simcit.tokenizer.batch import ViewBatch
from simcit.tokenizer.codeword_regularizer import codeword_regularizer
from simcit.tokenizer.config import SimCITConfig
from simcit.tokenizer.contrastive_loss import contrastive_loss, gather_negatives
from simcit.tokenizer.distributed import is_distributed
from simcit.tokenizer.outputs import LossOutput
from simcit.tokenizer.residual_quantizer import QuantizerOutput, ResidualQuantizer
from simcit.tokenizer.view_encoder import ViewEncoder


def _full_precision(like: Tensor) -> torch.autocast:
    """fp32 region even inside a caller's autocast: squared distances ||r||^2 - 2 r.c + ||c||^2
    and cosine logits / tau lose too much in bf16. Only the encoders may run in low precision."""
    return torch.autocast(like.device.type, enabled=False)


@dataclass
class Fused:
    h: Tensor        # [M, B, D] view latents (rows of absent views: finite, unused)
    present: Tensor  # bool [M, B]
    alpha: Tensor    # [M, B] fusion weights, 0 for absent views
    z: Tensor        # [B, D] fused latent


class SimCITTokenizer(nn.Module):
    kind = "simcit"
    requires_training = True

    def __init__(self, config: SimCITConfig) -> None:
        super().__init__()
        self.config = config
        self.view_names = tuple(config.views)
        d = config.latent_dim
        with torch.random.fork_rng(devices=[]):  # same config + seed -> same initial weights
            torch.manual_seed(config.seed)
            self._build(config, d)

    def _build(self, config: SimCITConfig, d: int) -> None:
        self.encoders = nn.ModuleDict(
            {name: ViewEncoder(dim, config.hidden_dims, d) for name, dim in config.views.items()})
        self.fusion = AttentionFusion(d, config.fusion_dim)
        self.quantizer = ResidualQuantizer(config.levels, config.codebook_size, d, config.gumbel_tau)
        self.projection = nn.Linear(d, d)  # P, shared by the quantized item and every view
        self._bf16_encoders = config.encoder_dtype == "bfloat16"

    # -- shared pieces ----------------------------------------------------------------------
    def _encode(self, batch: ViewBatch) -> tuple[Tensor, Tensor]:
        ref = next(iter(batch.features.values()))
        hs, masks = [], []
        any_full = False  # some view present for every item: each item has >= 1 view
        with torch.autocast(ref.device.type, dtype=torch.bfloat16, enabled=self._bf16_encoders):
            for name, encoder in self.encoders.items():
                if name in batch.features:
                    x, mask = batch.features[name], batch.present[name]
                    if bool(mask.all()):
                        any_full = True
                    else:
                        # Zero absent rows so that whatever they hold (NaN included) cannot leak
                        # into outputs or gradients; fusion and loss mask them out anyway.
                        x = x.masked_fill(~mask.unsqueeze(1), 0.0)
                    hs.append(encoder(x))
                else:  # a view this batch does not carry at all: absent for every item
                    mask = torch.zeros(ref.shape[0], dtype=torch.bool, device=ref.device)
                    hs.append(ref.new_zeros(ref.shape[0], self.config.latent_dim))
                masks.append(mask)
        present = torch.stack(masks)
        if not any_full and not bool(present.any(dim=0).all()):
            raise ValueError("every item needs at least one present view")
        # back to the parameter dtype (fp32) when the encoders ran under bf16 autocast
        return torch.stack(hs).to(self.projection.weight.dtype), present

    def fuse(self, batch: ViewBatch) -> Fused:
        h, present = self._encode(batch)
        with _full_precision(h):
            z, alpha = self.fusion(h, present)
        return Fused(h, present, alpha, z)

    def _loss(self, fused: Fused, quantized: QuantizerOutput, gather: bool) -> LossOutput:
        with _full_precision(fused.h):
            return self._loss_fp32(fused, quantized, gather)

    def _loss_fp32(self, fused: Fused, quantized: QuantizerOutput, gather: bool) -> LossOutput:
        proj = self.projection(torch.cat([quantized.quantized.unsqueeze(0), fused.h]))  # [1+M, B, D]
        u, v = proj.split([1, proj.shape[0] - 1])  # split: one cat in backward, no zero-fills
        u = u.squeeze(0)
        negatives = gather_negatives(u, v, fused.present) if gather else None
        con = contrastive_loss(u, v, fused.present, self.config.temperature, negatives)
        cw = codeword_regularizer(self.quantizer.codebooks)
        loss = con.loss + self.config.codeword_reg_weight * cw
        values = torch.cat([torch.stack([loss, con.loss, cw]), con.per_view]).detach().tolist()
        metrics = {"loss": values[0], "con_loss": values[1], "cw_loss": values[2]}
        metrics.update({f"con_loss/{name}": val for name, val in zip(self.view_names, values[3:])})
        return LossOutput(loss, metrics)

    # -- public interface -------------------------------------------------------------------
    def forward(self, batch: ViewBatch, noise: bool = True, tau: float | None = None) -> LossOutput:
        """Training loss with the soft (Gumbel-softmax) quantizer. ``noise=False`` drops the
        Gumbel noise; ``tau`` overrides the Gumbel temperature (annealing). Under
        torch.distributed (and ``config.gather_negatives``) negatives come from every worker; the
        returned loss then follows the DDP convention of ``contrastive_loss``."""
        fused = self.fuse(batch)
        with _full_precision(fused.z):
            quantized = self.quantizer(fused.z, soft=True, tau=tau, noise=noise, return_codes=False)
        gather = self.config.gather_negatives and is_distributed()
        return self._loss(fused, quantized, gather)

    def param_groups(self, lr: float, weight_decay: float = 0.0) -> list[dict]:
        """Optimizer parameter groups: codebooks at ``lr * config.codebook_lr_scale`` and without
        weight decay (it would shrink codewords towards 0); everything else at ``lr``."""
        codebooks = [self.quantizer.codebooks]
        rest = [p for name, p in self.named_parameters() if name != "quantizer.codebooks"]
        return [
            {"params": rest, "lr": lr, "weight_decay": weight_decay},
            {"params": codebooks, "lr": lr * self.config.codebook_lr_scale, "weight_decay": 0.0},
        ]

    @torch.no_grad()
    def validation_loss(self, batch: ViewBatch) -> LossOutput:
        """The loss with HARD codes (what inference uses), in-batch negatives only."""
        fused = self.fuse(batch)
        with _full_precision(fused.z):
            quantized = self.quantizer(fused.z, soft=False)
        return self._loss(fused, quantized, gather=False)

    @torch.no_grad()
    def codes(self, batch: ViewBatch) -> Tensor:
        """Semantic-ID codes [B, L] by hard argmin, whatever the train/eval mode."""
        z = self.fuse(batch).z
        with _full_precision(z):
            return self.quantizer(z, soft=False).codes

    @torch.no_grad()
    def latents(self, batch: ViewBatch) -> Tensor:
        """Fused latents z [B, D] (before quantization)."""
        return self.fuse(batch).z

    @torch.no_grad()
    def init_codebooks(self, batch: ViewBatch) -> None:
        """Residual k-means on the fused latents of ``batch`` (a large sample, >= K items).
        With several workers, call it before wrapping the model in DDP (which broadcasts rank 0's
        parameters) or on every rank with the same sample."""
        z = self.latents(batch)
        with _full_precision(z):
            self.quantizer.init_from_kmeans(z, self.config.kmeans_iters, self.config.seed)
