"""Per-view encoder (SPEC 2.1): bias-free MLP d_m -> 512 -> 384 -> 256 -> D, SiLU in between.

Initialisation [ours]: latents start with unit variance per coordinate (||h|| ~ sqrt(D)) for
L2-normalised inputs. That puts squared distances to codewords on the scale of the Gumbel noise
(spread ~ a few units) or above, so the soft quantizer carries information from the first step.
With PyTorch's default init ||h|| ~ 0.01: distance gaps ~ 1e-4 are swamped by the noise, the
soft assignment is random, and training stalls or collapses the codes.
"""
from __future__ import annotations

import math

import torch
from torch import nn

# E[silu(x)^2] for x ~ N(0, 1): the gain that keeps unit variance through a SiLU.
_SILU_SECOND_MOMENT = 0.3557755


class ViewEncoder(nn.Sequential):
    def __init__(self, in_dim: int, hidden_dims: tuple[int, ...], out_dim: int, input_norm: float = 1.0) -> None:
        dims = (in_dim, *hidden_dims, out_dim)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b, bias=False))
            if i < len(dims) - 2:  # no activation after the last layer: h_m is a raw latent
                layers.append(nn.SiLU())
        super().__init__(*layers)
        self.reset_parameters(input_norm)

    @property
    def linears(self) -> list[nn.Linear]:
        return [m for m in self if isinstance(m, nn.Linear)]

    @torch.no_grad()
    def reset_parameters(self, input_norm: float = 1.0) -> None:
        """Unit output variance per coordinate for inputs of L2 norm ``input_norm``."""
        for i, linear in enumerate(self.linears):
            if i == 0:  # y_j = w_j . x has variance std^2 * ||x||^2
                std = 1.0 / input_norm
            else:       # after a SiLU of unit-variance inputs
                std = 1.0 / math.sqrt(linear.in_features * _SILU_SECOND_MOMENT)
            linear.weight.normal_(0.0, std)
