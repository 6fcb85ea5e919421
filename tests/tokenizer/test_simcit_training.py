"""A short SimCIT training run on synthetic clustered data: the loss falls and the codes separate
items better than at initialisation."""
import time

import torch

from simcit.tokenizer import SimCITConfig, SimCITTokenizer

VIEWS = {"text": 32, "geo": 8, "cf": 8}


def _unique_tuples(codes: torch.Tensor) -> int:
    return torch.unique(codes, dim=0).shape[0]


def test_short_training_lowers_the_loss_and_spreads_the_codes(make_clustered_views):
    # Anisotropic views (a shared direction dominates every input, as with real text embeddings):
    # an untrained model maps most items onto a few code tuples.
    batch, _ = make_clustered_views(512, VIEWS, clusters=64, noise=0.3, seed=0, common=1.5)
    cfg = SimCITConfig(views=VIEWS, hidden_dims=(64, 32), latent_dim=16, levels=2, codebook_size=16,
                       kmeans_init=False, seed=0)
    model = SimCITTokenizer(cfg)
    unique_before = _unique_tuples(model.codes(batch))
    val_before = model.validation_loss(batch).metrics["loss"]

    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.param_groups(lr=3e-3, weight_decay=1e-3))
    losses = []
    start = time.perf_counter()
    for step in range(120):
        out = model(batch.select(slice((step % 4) * 128, (step % 4 + 1) * 128)))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.metrics["loss"])
    elapsed = time.perf_counter() - start
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < first - 5.0, (first, last)
    assert model.validation_loss(batch).metrics["loss"] < val_before - 5.0
    codes = model.codes(batch)
    assert codes.shape == (512, 2) and codes.dtype == torch.long and int(codes.max()) < 16
    unique_after = _unique_tuples(codes)
    assert unique_after > 1.5 * unique_before, (unique_before, unique_after, f"{elapsed:.1f}s")


def test_param_groups_scale_the_codebook_learning_rate():
    model = SimCITTokenizer(SimCITConfig(views={"a": 4}, hidden_dims=(8,), latent_dim=4,
                                         codebook_size=4, codebook_lr_scale=10.0))
    groups = model.param_groups(lr=1e-3, weight_decay=0.01)
    assert groups[1]["params"] == [model.quantizer.codebooks]
    assert groups[1]["lr"] == 1e-2 and groups[1]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
