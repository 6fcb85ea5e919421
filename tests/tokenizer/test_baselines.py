import pytest
import torch

from simcit.tokenizer import (RQKMeansConfig, RQKMeansTokenizer, RQVAEConfig, RQVAETokenizer,
                              ViewBatch)

VIEWS = {"text": 24, "cf": 8}


def _residual_argmin(x, codebooks):
    r, codes = x, []
    for c in codebooks:
        k = ((r[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        codes.append(k)
        r = r - c[k]
    return torch.stack(codes, 1)


def test_rqvae_reconstructs_better_after_a_few_steps(make_clustered_views):
    batch, _ = make_clustered_views(256, VIEWS, clusters=8, noise=0.1, seed=0)
    cfg = RQVAEConfig(views=VIEWS, hidden_dims=(32, 16), latent_dim=8, levels=2, codebook_size=16,
                      kmeans_iters=5)
    model = RQVAETokenizer(cfg)
    model.init_codebooks(batch)
    x = batch.concatenated(model.input_views)[0]
    before = (model.reconstruct(batch) - x).pow(2).sum(-1).mean().item()
    first = model.validation_loss(batch).metrics
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(60):
        out = model(batch.select(slice((step % 4) * 64, (step % 4 + 1) * 64)))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    after = (model.reconstruct(batch) - x).pow(2).sum(-1).mean().item()
    last = model.validation_loss(batch).metrics
    assert after < 0.6 * before
    assert last["recon_loss"] < first["recon_loss"] and last["loss"] < first["loss"]
    codes = model.codes(batch)
    assert codes.shape == (256, 2) and codes.max() < 16
    assert torch.equal(codes, _residual_argmin(model.latents(batch), model.quantizer.codebooks.detach()))


def test_rqvae_ignores_absent_views_in_the_reconstruction_loss(make_clustered_views):
    batch, _ = make_clustered_views(32, VIEWS, clusters=4, noise=0.1, seed=1)
    cfg = RQVAEConfig(views=VIEWS, hidden_dims=(16,), latent_dim=4, levels=2, codebook_size=4)
    model = RQVAETokenizer(cfg)
    batch.present["cf"][:16] = False
    other = ViewBatch({k: v.clone() for k, v in batch.features.items()}, batch.present)
    other.features["cf"][:16] = 123.0
    assert model.validation_loss(batch).metrics == model.validation_loss(other).metrics
    text_only = RQVAETokenizer(RQVAEConfig(views=VIEWS, input_views=("text",), hidden_dims=(16,),
                                           latent_dim=4, levels=2, codebook_size=4))
    assert text_only.encoder[0].in_features == 24


def test_rqkmeans_codes_are_argmin_consistent_and_deterministic(make_clustered_views):
    batch, _ = make_clustered_views(300, VIEWS, clusters=6, noise=0.2, seed=2)
    cfg = RQKMeansConfig(views=VIEWS, levels=3, codebook_size=8, iters=10, seed=4)
    a = RQKMeansTokenizer(cfg)
    with pytest.raises(RuntimeError, match="fit"):
        a.codes(batch)
    a.fit(batch)
    b = RQKMeansTokenizer(cfg).fit(batch.concatenated(a.input_views)[0].numpy())
    x = batch.concatenated(a.input_views)[0]
    codes = a.codes(batch)
    assert codes.shape == (300, 3)
    assert torch.equal(codes, _residual_argmin(x, a.quantizer.codebooks))
    assert torch.equal(codes, b.codes(batch))          # same seed -> same codes
    assert torch.equal(a.quantizer.codebooks, b.quantizer.codebooks)
    # deeper levels keep lowering the quantization error
    errs = []
    for levels in (1, 2, 3):
        r = x.clone()
        for level in range(levels):
            c = a.quantizer.codebooks[level]
            r = r - c[codes[:, level]]
        errs.append(r.pow(2).sum(-1).mean().item())
    assert errs[0] > errs[1] > errs[2]
    assert a.validation_loss(batch).metrics["quantization_error"] == pytest.approx(errs[2], rel=1e-5)
    with pytest.raises(NotImplementedError):
        a(batch)
    restored = RQKMeansTokenizer(cfg)
    restored.load_state_dict(a.state_dict())
    assert torch.equal(restored.codes(batch), codes)
