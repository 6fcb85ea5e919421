"""All-gather across workers for in-batch negatives from every worker (SPEC 2.5, [ours]).

``all_gather_with_grad`` returns the concatenation of every worker's rows. The local slice keeps
its autograd history; in backward, the gradients that every worker's loss sends to the gathered
tensor are summed (all_reduce) and each worker keeps the slice of its own rows. Worker w thus gets
d(sum_w' loss_w')/d(x_w): the contributions of its items as other workers' negatives included,
which a detach-the-remote-slices gather would silently drop.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


class _AllGatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, group: Optional[dist.ProcessGroup]) -> Tensor:  # type: ignore[override]
        ctx.group = group
        ctx.rank = dist.get_rank(group)
        ctx.rows = x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        grad = grad.contiguous().clone()  # all_reduce works in place: never touch autograd's buffer
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = ctx.rank * ctx.rows
        return grad[start:start + ctx.rows], None


def all_gather_with_grad(x: Tensor, group: Optional[dist.ProcessGroup] = None) -> tuple[Tensor, int]:
    """Rows of ``x`` [n_w, ...] from every worker, in rank order, and the offset of this worker's
    rows. Workers may hold different row counts (a last, smaller batch)."""
    if not is_distributed():
        return x, 0
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    n = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    sizes_t = [torch.empty_like(n) for _ in range(world)]
    dist.all_gather(sizes_t, n, group=group)
    sizes = [int(s.item()) for s in sizes_t]
    most = max(sizes)
    if x.shape[0] < most:  # all_gather needs equal shapes: pad, then drop the padding
        x = torch.cat([x, x.new_zeros((most - x.shape[0], *x.shape[1:]))])
    out = _AllGatherRows.apply(x, group)
    if min(sizes) != most:
        out = torch.cat([out[i * most:i * most + s] for i, s in enumerate(sizes)])
    return out, sum(sizes[:rank])
