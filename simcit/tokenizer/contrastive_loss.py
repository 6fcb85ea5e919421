"""GRACE-style multi-view contrastive loss with the quantized item as anchor (SPEC 2.5).

For item i and view m (cosine similarity s, temperature tau):
  l_i^m = -log( exp(s(u_i, v_i^m)/tau)
                / (sum_j exp(s(u_i, v_j^m)/tau) + sum_{j != i} exp(s(u_i, u_j)/tau)) )
  L_con = sum_m mean_{i has view m} l_i^m
Negatives v_j^m exist only for items j that have view m; items missing view m add no term.

Two GEMMs give every similarity: anchors x [v_1; ..; v_M] and anchors x u (the u-u block,
computed once and shared by every view); denominators are log-sum-exps.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from simcit.tokenizer.distributed import all_gather_with_grad, world_size

# Finite "minus infinity" for masked logits: exp() of it is exactly 0, yet a fully masked row
# (no item in the batch has a view) keeps finite gradients, unlike -inf.
_MASKED = -1e9
# Largest logit span (2 / tau) for which exp(s/tau - 1/tau) cannot underflow in fp32/bf16
# (exp(-80) ~ 1.8e-35 > 1.2e-38).
_MAX_STATIC_SPAN = 80.0


@functools.lru_cache(maxsize=16)
def _self_pairs(b: int, n: int, offset: int, device: torch.device) -> Tensor:
    """bool [B, N], True at (i, offset + i): the anchor itself in the u-u block."""
    return torch.arange(n, device=device) == torch.arange(offset, offset + b, device=device)[:, None]


@dataclass
class GlobalNegatives:
    """Every worker's anchors and views (rows in rank order) for cross-worker negatives."""

    u: Tensor         # [N, P] projected quantized items
    v: Tensor         # [M, N, P] projected views
    present: Tensor   # bool [M, N]
    offset: int       # first row of this worker's batch
    world_size: int


@dataclass
class ContrastiveOutput:
    loss: Tensor      # scalar: sum of per-view losses
    per_view: Tensor  # [M]


def gather_negatives(u: Tensor, v: Tensor, present: Tensor) -> GlobalNegatives:
    """All-gather u, v and the presence mask in ONE collective (a packed [B, P + M P + M] row)."""
    m, b, p = v.shape
    packed = torch.cat([u, v.transpose(0, 1).reshape(b, m * p), present.t().to(u.dtype)], dim=1)
    full, offset = all_gather_with_grad(packed)
    n = full.shape[0]
    return GlobalNegatives(
        u=full[:, :p],
        v=full[:, p:p + m * p].reshape(n, m, p).transpose(0, 1),
        present=full[:, p + m * p:].t() > 0.5,
        offset=offset,
        world_size=world_size(),
    )


def contrastive_loss(
    u: Tensor,
    v: Tensor,
    present: Tensor,
    temperature: float,
    negatives: GlobalNegatives | None = None,
) -> ContrastiveOutput:
    """u [B, P] anchors, v [M, B, P] views, present bool [M, B].

    With ``negatives`` (from ``gather_negatives``) the denominators run over every worker's
    items and the per-view means over every worker's items having the view. Each worker returns
    world_size * (its share of the global loss): the mean over workers is the single-process
    loss on the concatenated batch, and DDP's gradient averaging yields its exact gradient.
    """
    m, b, p = v.shape
    if negatives is None:
        cols = F.normalize(torch.cat([v, u.unsqueeze(0)]), dim=-1)  # [M+1, B, P]
        own_views, anchors = cols.split([m, 1])
        anchors = anchors.squeeze(0)
        col_views, col_items = own_views, anchors
        col_present, offset, scale = present, 0, 1.0
    else:
        anchors, own_views = F.normalize(u, dim=-1), F.normalize(v, dim=-1)
        col_views, col_items = F.normalize(negatives.v, dim=-1), F.normalize(negatives.u, dim=-1)
        col_present, offset, scale = negatives.present, negatives.offset, float(negatives.world_size)
    n = col_items.shape[0]
    inv_t = 1.0 / temperature
    pos = (own_views * anchors).sum(-1) * inv_t  # [M, B]  s(u_i, v_i^m) / tau

    # s/tau for anchors x [v_1 | .. | v_M] in one GEMM whose bias row removes the negatives that
    # do not exist (item j lacks view m) and, on the fast path, subtracts the static shift; the
    # u-u block once for all views in a second GEMM, its diagonal (j == i) masked.
    static_shift = 2.0 * inv_t <= _MAX_STATIC_SPAN
    shift = inv_t if static_shift else 0.0
    shift_t = u.new_full((1,), -shift)
    if bool(col_present.all()):  # common case: no missing view in the (global) batch
        bias_v = shift_t
    else:
        bias_v = u.new_full((m, n), -shift).masked_fill_(~col_present, _MASKED).view(-1)
    sim_v = torch.addmm(bias_v, anchors, col_views.reshape(-1, p).t(), alpha=inv_t).view(b, m, n)
    sim_u = torch.addmm(shift_t, anchors, col_items.t(), alpha=inv_t).masked_fill(
        _self_pairs(b, n, offset, u.device), _MASKED)
    if static_shift:
        # Cosine similarity is <= 1, so s/tau - 1/tau <= 0: every term of the sums lies in
        # (0, 1] and, with 2/tau <= _MAX_STATIC_SPAN, above fp32 underflow. This IS log-sum-exp
        # with the maximum known in advance: no extra pass to find it, no inf/NaN possible.
        sum_uv = sim_v.exp().sum(dim=2)                                       # [B, M]
        sum_uu = sim_u.exp().sum(dim=1, keepdim=True)                         # [B, 1]
        log_denominator = torch.log(sum_uv + sum_uu) + shift                  # [B, M]
    else:  # small temperature: per-row max shift
        log_denominator = torch.logaddexp(sim_v.logsumexp(dim=2), sim_u.logsumexp(dim=1, keepdim=True))

    per_item = (log_denominator.t() - pos).masked_fill(~present, 0.0)         # [M, B]
    counts = col_present.sum(dim=1).clamp_min(1).to(per_item.dtype)          # [M]
    per_view = per_item.sum(dim=1) * (scale / counts)
    return ContrastiveOutput(loss=per_view.sum(), per_view=per_view)
