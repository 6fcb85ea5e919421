"""Items missing a view: zero fusion weight, no loss term, and their (ignored) feature values
cannot change any output."""
import math

import pytest
import torch

from simcit.tokenizer import AttentionFusion, SimCITConfig, SimCITTokenizer, ViewBatch

VIEWS = {"text": 12, "geo": 6, "cf": 5}


def _model(**kw) -> SimCITTokenizer:
    cfg = SimCITConfig(views=VIEWS, hidden_dims=(16,), latent_dim=8, levels=2, codebook_size=8, **kw)
    return SimCITTokenizer(cfg).double()


def _batch(b=10, seed=0) -> ViewBatch:
    g = torch.Generator().manual_seed(seed)
    feats = {k: torch.randn(b, d, generator=g, dtype=torch.float64) for k, d in VIEWS.items()}
    present = {k: torch.ones(b, dtype=torch.bool) for k in VIEWS}
    present["geo"][[1, 4]] = False
    present["cf"][[1, 7]] = False
    present["text"][3] = False
    return ViewBatch(feats, present)


def test_fusion_weights_are_a_softmax_over_present_views_only():
    fusion = AttentionFusion(4)
    h = torch.randn(3, 5, 4)
    present = torch.tensor([[1, 1, 0, 1, 1], [1, 0, 0, 1, 1], [1, 1, 1, 0, 1]], dtype=torch.bool)
    z, alpha = fusion(h, present)
    assert torch.all(alpha[~present] == 0)
    torch.testing.assert_close(alpha.sum(0), torch.ones(5))
    torch.testing.assert_close(z[2], h[2, 2])  # a single present view is taken as is
    torch.testing.assert_close(z, (alpha.unsqueeze(-1) * h).sum(0))
    # the scores come from one shared scorer: w^T tanh(W h + b)
    s = fusion.score(torch.tanh(fusion.proj(h))).squeeze(-1)
    torch.testing.assert_close(alpha[:, 0], torch.softmax(s[:, 0], 0))


def test_missing_view_gets_zero_weight_in_the_model():
    model, batch = _model(), _batch()
    fused = model.fuse(batch)
    assert fused.alpha[1, 1] == 0 and fused.alpha[2, 1] == 0 and fused.alpha[0, 3] == 0
    torch.testing.assert_close(fused.z[1], fused.h[0, 1])  # item 1 has text only


@pytest.mark.parametrize("garbage", [1e3, float("nan")])
def test_values_of_absent_views_change_no_output_and_no_gradient(garbage):
    batch = _batch()
    other = ViewBatch({k: v.clone() for k, v in batch.features.items()}, batch.present)
    for name, mask in batch.present.items():
        other.features[name][~mask] = garbage

    results = []
    for b in (batch, other):
        model = _model()
        torch.manual_seed(0)
        out = model(b)
        out.loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        results.append((out, grads, model.codes(b), model.validation_loss(b)))
    (o1, g1, c1, v1), (o2, g2, c2, v2) = results
    assert o1.metrics == o2.metrics and v1.metrics == v2.metrics
    assert torch.equal(c1, c2)
    for a, b in zip(g1, g2):
        assert torch.isfinite(b).all()
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@torch.no_grad()
def test_per_view_loss_averages_only_over_items_having_the_view():
    model, batch = _model(), _batch()
    model.eval()
    fused = model.fuse(batch)
    q = model.quantizer(fused.z, soft=False)
    proj = model.projection(torch.cat([q.quantized.unsqueeze(0), fused.h]))
    from simcit.tokenizer import contrastive_loss
    con = contrastive_loss(proj[0], proj[1:], fused.present, 0.07)
    val = model.validation_loss(batch)
    assert val.metrics["con_loss/geo"] == pytest.approx(con.per_view[1].item())
    # recompute the geo term by hand: mean over the 8 items that have geo
    u = torch.nn.functional.normalize(proj[0], dim=-1)
    v = torch.nn.functional.normalize(proj[2], dim=-1)
    has = fused.present[1]
    terms = []
    for i in torch.nonzero(has).flatten().tolist():
        den = [float(u[i] @ v[j]) / 0.07 for j in range(10) if has[j]]
        den += [float(u[i] @ u[j]) / 0.07 for j in range(10) if j != i]
        terms.append(math.log(sum(math.exp(x) for x in den)) - float(u[i] @ v[i]) / 0.07)
    assert len(terms) == 8
    assert val.metrics["con_loss/geo"] == pytest.approx(sum(terms) / 8, rel=1e-9)


def test_items_without_any_view_are_rejected():
    batch = _batch()
    for mask in batch.present.values():
        mask[0] = False
    with pytest.raises(ValueError, match="at least one present view"):
        _model()(batch)


def test_a_view_absent_from_the_batch_entirely_is_allowed():
    model = _model()
    batch = _batch()
    partial = ViewBatch({k: batch.features[k] for k in ("text", "geo")},
                        {k: batch.present[k].clone() for k in ("text", "geo")})
    partial.present["text"][:] = True
    out = model(partial)
    assert out.metrics["con_loss/cf"] == 0 and math.isfinite(out.metrics["loss"])
    assert model.codes(partial).shape == (10, 2)
