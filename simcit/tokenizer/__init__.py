"""Item tokenizers: SimCIT (contrastive, SPEC 2) and the RQ-VAE / RQ-KMeans baselines.

Plain PyTorch (no Spark, no Ray), so the same model runs in a unit test, a Ray Train worker or a
Spark UDF. Every tokenizer takes a ``ViewBatch`` and offers ``codes(batch) -> [B, L]``,
``init_codebooks(batch)``, ``validation_loss(batch)`` and ``param_groups(lr, weight_decay)``
(optimizer groups); trainable ones (``requires_training``) return a ``LossOutput`` from
``forward(batch)``. Training on CPU: prefer ``torch.optim.AdamW(..., fused=True)``.
"""
from __future__ import annotations

from typing import Union

from simcit.tokenizer.attention_fusion import AttentionFusion
from simcit.tokenizer.batch import ViewBatch
from simcit.tokenizer.codeword_regularizer import codeword_regularizer
from simcit.tokenizer.config import RQKMeansConfig, RQVAEConfig, SimCITConfig
from simcit.tokenizer.contrastive_loss import (ContrastiveOutput, GlobalNegatives, contrastive_loss,
                                               gather_negatives)
from simcit.tokenizer.distributed import all_gather_with_grad, is_distributed
from simcit.tokenizer.kmeans import KMeansResult, kmeans, nearest, squared_distances
from simcit.tokenizer.outputs import LossOutput
from simcit.tokenizer.residual_quantizer import QuantizerOutput, ResidualQuantizer
from simcit.tokenizer.rqkmeans import RQKMeansTokenizer
from simcit.tokenizer.rqvae import RQVAETokenizer
from simcit.tokenizer.simcit_model import SimCITTokenizer
from simcit.tokenizer.view_encoder import ViewEncoder

TokenizerConfig = Union[SimCITConfig, RQVAEConfig, RQKMeansConfig]
Tokenizer = Union[SimCITTokenizer, RQVAETokenizer, RQKMeansTokenizer]

_KINDS = {
    "simcit": (SimCITConfig, SimCITTokenizer),
    "rqvae": (RQVAEConfig, RQVAETokenizer),
    "rqkmeans": (RQKMeansConfig, RQKMeansTokenizer),
}


def build_tokenizer(kind: str, config: TokenizerConfig) -> Tokenizer:
    """The tokenizer ``kind`` ("simcit", "rqvae", "rqkmeans") built from its config."""
    if kind not in _KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; choose one of {sorted(_KINDS)}")
    config_cls, model_cls = _KINDS[kind]
    if not isinstance(config, config_cls):
        raise TypeError(f"tokenizer {kind!r} needs a {config_cls.__name__}, got {type(config).__name__}")
    return model_cls(config)


def config_class(kind: str) -> type:
    """The config dataclass of tokenizer ``kind`` (to build it from YAML)."""
    if kind not in _KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; choose one of {sorted(_KINDS)}")
    return _KINDS[kind][0]


__all__ = [
    "AttentionFusion", "ContrastiveOutput", "GlobalNegatives", "KMeansResult", "LossOutput",
    "QuantizerOutput", "RQKMeansConfig", "RQKMeansTokenizer", "RQVAEConfig", "RQVAETokenizer",
    "ResidualQuantizer", "SimCITConfig", "SimCITTokenizer", "Tokenizer", "TokenizerConfig",
    "ViewBatch", "ViewEncoder", "all_gather_with_grad", "build_tokenizer", "codeword_regularizer",
    "config_class", "contrastive_loss", "gather_negatives", "is_distributed", "kmeans", "nearest",
    "squared_distances",
]
