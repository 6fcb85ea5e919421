import math

import pytest
import torch
import torch.nn.functional as F

from simcit.tokenizer import contrastive_loss


def reference_loss(u, v, present, tau):
    """The SPEC formula item by item (slow, float64)."""
    un, vn = F.normalize(u, dim=-1), F.normalize(v, dim=-1)
    m_views, b = present.shape
    total, per_view = 0.0, []
    for m in range(m_views):
        terms = []
        for i in range(b):
            if not present[m, i]:
                continue
            num = float(un[i] @ vn[m, i]) / tau
            den = [float(un[i] @ vn[m, j]) / tau for j in range(b) if present[m, j]]
            den += [float(un[i] @ un[j]) / tau for j in range(b) if j != i]
            top = max(den)
            terms.append(-(num - (top + math.log(sum(math.exp(x - top) for x in den)))))
        per_view.append(sum(terms) / len(terms) if terms else 0.0)
        total += per_view[-1]
    return total, per_view


def _data(b=24, m=3, p=8, seed=0, missing=0.25):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, p, generator=g, dtype=torch.float64)
    v = u.unsqueeze(0) + 0.8 * torch.randn(m, b, p, generator=g, dtype=torch.float64)
    present = torch.rand(m, b, generator=g) > missing
    return u, v, present


@pytest.mark.parametrize("tau", [0.07, 0.02, 0.5])
def test_matches_the_formula_with_missing_views(tau):
    # 0.07 / 0.5 take the static-shift path, 0.02 the per-row logsumexp path
    u, v, present = _data()
    out = contrastive_loss(u, v, present, tau)
    total, per_view = reference_loss(u, v, present, tau)
    assert out.loss.item() == pytest.approx(total, rel=1e-9)
    assert out.per_view.tolist() == pytest.approx(per_view, rel=1e-9)


def test_aligned_views_give_lower_loss_than_shuffled_ones():
    u, v, present = _data(b=64, missing=0.0)
    present[:] = True
    aligned = contrastive_loss(u, v, present, 0.07).loss
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(1))
    shuffled = contrastive_loss(u, v[:, perm], present, 0.07).loss
    assert aligned < shuffled - 1.0


def test_absent_views_neither_count_as_positives_nor_as_negatives():
    u, v, present = _data()
    v = v.clone().requires_grad_(True)
    out = contrastive_loss(u, v, present, 0.07)
    out.loss.backward()
    assert torch.all(v.grad[~present] == 0)  # absent rows take no part at all
    # arbitrary (even huge) values in absent rows change nothing
    v2 = v.detach().clone()
    v2[~present] = 1e6 * torch.randn(int((~present).sum()), v.shape[-1], dtype=v.dtype)
    assert contrastive_loss(u, v2, present, 0.07).loss.item() == pytest.approx(out.loss.item(), rel=1e-12)


def test_a_view_missing_from_the_whole_batch_adds_nothing_and_stays_finite():
    u, v, present = _data()
    present[1] = False
    u = u.clone().requires_grad_(True)
    out = contrastive_loss(u, v, present, 0.07)
    out.loss.backward()
    assert out.per_view[1] == 0 and torch.isfinite(u.grad).all()
    two_views = contrastive_loss(u, v[[0, 2]], present[[0, 2]], 0.07)
    assert out.loss.item() == pytest.approx(two_views.loss.item(), rel=1e-12)


def test_gradient_matches_autograd_of_the_reference_in_float64():
    u, v, present = _data(b=10, p=5)
    u = u.clone().requires_grad_(True)
    v = v.clone().requires_grad_(True)
    contrastive_loss(u, v, present, 0.07).loss.backward()
    gu, gv = u.grad.clone(), v.grad.clone()
    u.grad = v.grad = None

    # the same loss written naively with torch ops (masks as -inf), differentiated by autograd
    un, vn = F.normalize(u, dim=-1), F.normalize(v, dim=-1)
    total = 0
    for m in range(3):
        s_uv = (un @ vn[m].t() / 0.07).masked_fill(~present[m][None, :], float("-inf"))
        s_uu = (un @ un.t() / 0.07).masked_fill(torch.eye(10, dtype=torch.bool), float("-inf"))
        lse = torch.logsumexp(torch.cat([s_uv, s_uu], 1), 1)
        l_i = lse - (un * vn[m]).sum(-1) / 0.07
        total = total + l_i[present[m]].mean()
    total.backward()
    torch.testing.assert_close(gu, u.grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gv, v.grad, rtol=1e-9, atol=1e-12)
