"""Two gloo workers with gathered negatives == one process on the concatenated batch.

Convention (see contrastive_loss): each worker's loss is world_size x its share of the global
loss, so the MEAN of the workers' losses is the single-process loss and averaging gradients (what
DDP does) gives the single-process gradient. Workers hold uneven batches (5 and 7 items)."""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from simcit.tokenizer import (SimCITConfig, SimCITTokenizer, ViewBatch, contrastive_loss,
                              gather_negatives)

VIEWS = {"text": 7, "geo": 4}
SPLIT = (5, 7)


def _tensors():
    g = torch.Generator().manual_seed(0)
    n = sum(SPLIT)
    u = torch.randn(n, 6, generator=g, dtype=torch.float64)
    v = u + 0.5 * torch.randn(3, n, 6, generator=g, dtype=torch.float64)
    present = torch.rand(3, n, generator=g) > 0.3
    return u, v, present


def _batch() -> ViewBatch:
    g = torch.Generator().manual_seed(1)
    n = sum(SPLIT)
    feats = {k: torch.randn(n, d, generator=g, dtype=torch.float64) for k, d in VIEWS.items()}
    present = {"text": torch.ones(n, dtype=torch.bool), "geo": torch.rand(n, generator=g) > 0.3}
    present["text"][2] = present["geo"][2] = True
    present["text"][9] = False
    present["geo"][9] = True
    return ViewBatch(feats, present)


def _model() -> SimCITTokenizer:
    cfg = SimCITConfig(views=VIEWS, hidden_dims=(12,), latent_dim=6, levels=2, codebook_size=4, seed=3)
    return SimCITTokenizer(cfg).double()


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        lo = sum(SPLIT[:rank])
        rows = slice(lo, lo + SPLIT[rank])

        # 1) the loss function on raw tensors
        u, v, present = _tensors()
        u_loc = u[rows].clone().requires_grad_(True)
        v_loc = v[:, rows].clone().requires_grad_(True)
        negatives = gather_negatives(u_loc, v_loc, present[:, rows])
        assert negatives.offset == lo and negatives.u.shape[0] == sum(SPLIT)
        out = contrastive_loss(u_loc, v_loc, present[:, rows], 0.07, negatives)
        out.loss.backward()

        # 2) the whole model (Gumbel noise off so both sides are deterministic)
        model = _model()
        model_out = model(_batch().select(rows), noise=False)
        model_out.loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters()])
        dist.all_reduce(grads)  # what DDP does: average the gradients
        grads /= world
        losses = torch.tensor([out.loss.item(), model_out.loss.item()], dtype=torch.float64)
        dist.all_reduce(losses)
        losses /= world
        torch.save({"u_grad": u_loc.grad, "v_grad": v_loc.grad, "losses": losses,
                    "per_view": out.per_view.detach(), "model_grads": grads},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_two_gloo_workers_match_single_process(tmp_path):
    world = 2
    mp.spawn(_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]

    # single process, concatenated batch
    u, v, present = _tensors()
    u, v = u.clone().requires_grad_(True), v.clone().requires_grad_(True)
    single = contrastive_loss(u, v, present, 0.07)
    single.loss.backward()
    model = _model()
    single_model = model(_batch(), noise=False)
    single_model.loss.backward()
    single_grads = torch.cat([p.grad.flatten() for p in model.parameters()])

    assert ranks[0]["losses"][0].item() == pytest.approx(single.loss.item(), rel=1e-12)
    torch.testing.assert_close(sum(r["per_view"] for r in ranks) / world, single.per_view.detach())
    # per-worker input gradients: world_size x the single-process gradient of those rows (DDP
    # divides by world_size when it averages parameter gradients)
    torch.testing.assert_close(torch.cat([r["u_grad"] for r in ranks]) / world, u.grad)
    torch.testing.assert_close(torch.cat([r["v_grad"] for r in ranks], dim=1) / world, v.grad)

    assert ranks[0]["losses"][1].item() == pytest.approx(single_model.loss.item(), rel=1e-10)
    torch.testing.assert_close(ranks[0]["model_grads"], single_grads, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ranks[1]["model_grads"], single_grads, rtol=1e-9, atol=1e-12)
