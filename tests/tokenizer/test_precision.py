"""bf16 encoders: only the encoders run in low precision; fusion, quantizer and loss stay fp32,
also inside a caller's autocast region."""
import math

import torch

from simcit.tokenizer import SimCITConfig, SimCITTokenizer, ViewBatch

VIEWS = {"text": 16, "geo": 8}


def _batch():
    g = torch.Generator().manual_seed(0)
    return ViewBatch.dense({k: torch.nn.functional.normalize(torch.randn(32, d, generator=g), dim=1)
                            for k, d in VIEWS.items()})


def _model(dtype):
    return SimCITTokenizer(SimCITConfig(views=VIEWS, hidden_dims=(32,), latent_dim=8, levels=2,
                                        codebook_size=8, encoder_dtype=dtype))


def test_bf16_encoders_keep_the_rest_in_fp32_and_train():
    model, batch = _model("bfloat16"), _batch()
    fused = model.fuse(batch)
    assert fused.h.dtype == torch.float32 and fused.z.dtype == torch.float32
    out = model(batch)
    out.loss.backward()
    assert math.isfinite(out.metrics["loss"])
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())
    # close to the fp32 model with the same weights (bf16 keeps ~3 significant digits)
    ref = _model("float32")
    ref.load_state_dict(model.state_dict())
    torch.testing.assert_close(ref.fuse(batch).z, fused.z, rtol=0.05, atol=0.05)


def test_quantizer_ignores_a_callers_autocast():
    model, batch = _model("float32"), _batch()
    expected = model.codes(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(model.codes(batch), expected)
        out = model(batch, noise=False)
    assert out.loss.dtype == torch.float32
