import torch
import torch.nn.functional as F

from simcit.tokenizer import codeword_regularizer


def _brute(codebooks):
    c = F.normalize(codebooks, dim=-1)
    k = c.shape[1]
    gram = c @ c.transpose(1, 2)
    off = gram.masked_select(~torch.eye(k, dtype=torch.bool).expand_as(gram)).view(c.shape[0], -1)
    return off.mean(1).mean()


def test_equals_the_mean_off_diagonal_cosine():
    cb = torch.randn(3, 10, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(codeword_regularizer(cb), _brute(cb))


def test_lower_for_spread_codewords_than_for_clustered_ones():
    g = torch.Generator().manual_seed(1)
    direction = torch.randn(1, 1, 16, generator=g)
    clustered = direction + 0.05 * torch.randn(2, 16, 16, generator=g)
    spread = torch.linalg.qr(torch.randn(16, 16, generator=g))[0].expand(2, 16, 16)
    antipodal = torch.cat([spread, -spread], dim=1)
    assert codeword_regularizer(clustered) > 0.9
    assert abs(codeword_regularizer(spread)) < 1e-5
    # the minimum -1/(K-1) is reached by codewords summing to zero
    torch.testing.assert_close(codeword_regularizer(antipodal), torch.tensor(-1 / 31))


def test_gradient_descent_spreads_codewords():
    g = torch.Generator().manual_seed(2)
    cb = (torch.ones(2, 8, 4) + 0.1 * torch.randn(2, 8, 4, generator=g)).requires_grad_(True)
    opt = torch.optim.Adam([cb], lr=0.1)
    values = []
    for _ in range(30):
        loss = codeword_regularizer(cb)
        values.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert values[-1] < values[0] - 0.5
