import torch

from simcit.tokenizer import ResidualQuantizer
from simcit.tokenizer.residual_quantizer import log_exponential_noise


def _quantizer(seed: int = 0, levels: int = 3, k: int = 16, d: int = 8) -> ResidualQuantizer:
    torch.manual_seed(seed)
    return ResidualQuantizer(levels, k, d, tau=0.2)


def _brute_force_codes(z: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    r, codes = z.clone(), []
    for c in codebooks:
        d = ((r[:, None, :] - c[None]) ** 2).sum(-1)
        k = d.argmin(1)
        codes.append(k)
        r = r - c[k]
    return torch.stack(codes, 1)


def test_hard_codes_equal_brute_force_argmin_and_distances_are_exact():
    q = _quantizer()
    z = torch.randn(200, 8, generator=torch.Generator().manual_seed(1))
    out = q(z, soft=False, return_distances=True)
    assert out.codes.shape == (200, 3) and out.codes.dtype == torch.long
    assert torch.equal(out.codes, _brute_force_codes(z, q.codebooks.detach()))
    assert torch.equal(q.codes(z), out.codes)
    r0 = z
    brute = ((r0[:, None, :] - q.codebooks.detach()[0][None]) ** 2).sum(-1)
    torch.testing.assert_close(out.distances[0], brute, atol=1e-4, rtol=1e-4)


def test_residual_chain_sums_back_in_both_modes():
    q = _quantizer()
    z = torch.randn(64, 8, generator=torch.Generator().manual_seed(2))
    for soft in (False, True):
        out = q(z, soft=soft)
        torch.testing.assert_close(out.quantized + out.residual, z, atol=1e-5, rtol=1e-5)
    hard = q(z, soft=False)
    picked = sum(q.codebooks[level][hard.codes[:, level]] for level in range(3))
    torch.testing.assert_close(hard.quantized, picked)


@torch.no_grad()
def test_soft_assignment_approaches_hard_one_as_temperature_falls():
    q = _quantizer()
    z = torch.randn(128, 8, generator=torch.Generator().manual_seed(3))
    hard = q(z, soft=False).quantized
    errors = [float((q(z, soft=True, noise=False, tau=t).quantized - hard).abs().mean())
              for t in (1.0, 0.1, 0.01, 1e-3, 1e-5)]
    assert all(a > b for a, b in zip(errors[:3], errors[1:4])), errors
    assert errors[-1] < 1e-5 < errors[0]
    # the soft path reports argmin codes of ITS residuals: level 1 always equals the hard code,
    # deeper levels once the soft residual chain has converged to the hard one
    hard_codes = q(z, soft=False).codes
    assert torch.equal(q(z, soft=True, noise=False).codes[:, 0], hard_codes[:, 0])
    assert torch.equal(q(z, soft=True, noise=False, tau=1e-5).codes, hard_codes)


@torch.no_grad()
def test_gumbel_noise_is_seeded_and_low_tau_gives_the_gumbel_max_sample():
    q = _quantizer()
    z = torch.randn(32, 8, generator=torch.Generator().manual_seed(4))
    a = q(z, soft=True, generator=torch.Generator().manual_seed(5)).quantized
    b = q(z, soft=True, generator=torch.Generator().manual_seed(5)).quantized
    c = q(z, soft=True, generator=torch.Generator().manual_seed(6)).quantized
    assert torch.equal(a, b) and not torch.equal(a, c)
    # softmax((-d + g) / tau) -> one-hot at argmax(-d + g) = argmin(d + log E) as tau -> 0
    sharp = q(z, soft=True, tau=1e-5, generator=torch.Generator().manual_seed(7)).quantized
    log_e = log_exponential_noise((3, 32, 16), z, torch.Generator().manual_seed(7))
    r, expected = z, torch.zeros_like(z)
    for level, c_l in enumerate(q.codebooks):
        k = (((r[:, None, :] - c_l[None]) ** 2).sum(-1) + log_e[level]).argmin(1)
        expected, r = expected + c_l[k], r - c_l[k]
    torch.testing.assert_close(sharp, expected, atol=1e-4, rtol=1e-4)


def test_soft_path_is_differentiable_wrt_input_and_codebooks():
    q = _quantizer()
    z = torch.randn(16, 8, requires_grad=True)
    q(z, soft=True).quantized.pow(2).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert q.codebooks.grad is not None and q.codebooks.grad.abs().sum() > 0


@torch.no_grad()
def test_kmeans_init_lowers_quantization_error():
    g = torch.Generator().manual_seed(8)
    z = torch.randn(600, 8, generator=g) * 3
    q = _quantizer()
    before = q(z, soft=False).residual.pow(2).sum(-1).mean()
    q.init_from_kmeans(z, iters=10, seed=0)
    after = q(z, soft=False).residual.pow(2).sum(-1).mean()
    assert after < 0.5 * before
    # each level's error is no worse than stopping one level earlier
    errs = []
    for levels in (1, 2, 3):
        sub = ResidualQuantizer(levels, 16, 8)
        sub.codebooks.data.copy_(q.codebooks.data[:levels])
        errs.append(float(sub(z, soft=False).residual.pow(2).sum(-1).mean()))
    assert errs[0] > errs[1] > errs[2]


def test_gumbel_noise_has_the_gumbel_moments():
    g = -log_exponential_noise((200_000,), torch.zeros(1), torch.Generator().manual_seed(0))
    assert torch.isfinite(g).all()
    assert abs(g.mean().item() - 0.5772) < 0.01                  # Euler-Mascheroni
    assert abs(g.var().item() - torch.pi ** 2 / 6) < 0.03
