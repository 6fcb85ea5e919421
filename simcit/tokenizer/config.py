"""Typed configs of the three tokenizers (SimCIT, the TIGER RQ-VAE baseline, RQ-KMeans).

Plain dataclasses with simple field types (dict / tuple / int / float / bool / Optional) so that
``simcit.typed_config.build`` can load them from YAML; ``__post_init__`` rejects bad values at
start-up with a message naming the field.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional


def _check_views(views: dict[str, int]) -> None:
    if not views:
        raise ValueError("views must name at least one view (name -> input dim)")
    for name, dim in views.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"views: view names must be non-empty strings, got {name!r}")
        if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
            raise ValueError(f"views.{name}: input dim must be a positive integer, got {dim!r}")


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")


def _check_dims(name: str, dims: tuple[int, ...]) -> None:
    if any(d <= 0 for d in dims):
        raise ValueError(f"{name} must be positive integers, got {dims!r}")


def _validated_input_views(
    views: dict[str, int], input_views: Optional[tuple[str, ...]]
) -> Optional[tuple[str, ...]]:
    """Check ``views`` and ``input_views`` of a baseline config; YAML lists become tuples."""
    _check_views(views)
    if input_views is not None:
        input_views = tuple(input_views)
    _check_input_views(views, input_views)
    return input_views


def _check_input_views(views: dict[str, int], input_views: Optional[tuple[str, ...]]) -> None:
    if input_views is None:
        return
    if not input_views:
        raise ValueError("input_views must be None (all views) or name at least one view")
    unknown = [v for v in input_views if v not in views]
    if unknown:
        raise ValueError(f"input_views {unknown} are not in views {sorted(views)}")
    if len(set(input_views)) != len(input_views):
        raise ValueError(f"input_views has duplicates: {input_views!r}")


@dataclass
class SimCITConfig:
    """SimCIT contrastive tokenizer (SPEC section 2)."""

    views: dict[str, int]                          # view name -> input embedding dim
    hidden_dims: tuple[int, ...] = (512, 384, 256)  # per-view encoder MLP
    latent_dim: int = 128                          # D
    levels: int = 3                                # L
    codebook_size: int = 256                       # K
    gumbel_tau: float = 0.2                        # Gumbel-softmax temperature (authors: fixed)
    temperature: float = 0.07                      # contrastive temperature
    codeword_reg_weight: float = 1.0
    # [ours] Learning-rate multiplier of the codebooks (see SimCITTokenizer.param_groups). Adam
    # moves each codeword coordinate by ~lr per step while the encoders can rescale z much
    # faster; codebooks left behind by a growing z leave only a few "hull" codewords in use and
    # the codes collapse early in training. 1.0 = one learning rate for everything (authors).
    codebook_lr_scale: float = 10.0
    # Width of the fusion scorer's hidden layer W; None -> latent_dim.
    fusion_dim: Optional[int] = None
    kmeans_init: bool = True
    kmeans_iters: int = 20
    # Several workers: take negatives from every worker's batch (all-gather), not only local.
    gather_negatives: bool = True
    # "bfloat16": run the view encoders under bf16 autocast (CPU AMX / GPU tensor cores);
    # quantizer, fusion and loss stay fp32 regardless.
    encoder_dtype: Literal["float32", "bfloat16"] = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        _check_views(self.views)
        if self.encoder_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"encoder_dtype must be 'float32' or 'bfloat16', got {self.encoder_dtype!r}")
        self.hidden_dims = tuple(self.hidden_dims)
        _check_dims("hidden_dims", self.hidden_dims)
        _check_positive(latent_dim=self.latent_dim, levels=self.levels, gumbel_tau=self.gumbel_tau,
                        temperature=self.temperature, kmeans_iters=self.kmeans_iters,
                        codebook_lr_scale=self.codebook_lr_scale)
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {self.codebook_size}")
        if self.codeword_reg_weight < 0:
            raise ValueError(f"codeword_reg_weight must be >= 0, got {self.codeword_reg_weight}")
        if self.fusion_dim is not None:
            _check_positive(fusion_dim=self.fusion_dim)


@dataclass
class RQVAEConfig:
    """TIGER-style RQ-VAE baseline (Rajput et al. 2023): MLP auto-encoder + residual VQ.

    TIGER: encoder 768 -> 512 -> 256 -> 128 -> 32, ReLU, 3 levels x 256 codewords, latent 32,
    commitment beta 0.25, k-means codebook init.
    """

    views: dict[str, int]
    # Views fed to the auto-encoder, concatenated in this order; None -> every view.
    input_views: Optional[tuple[str, ...]] = None
    hidden_dims: tuple[int, ...] = (512, 256, 128)
    latent_dim: int = 32
    levels: int = 3
    codebook_size: int = 256
    beta: float = 0.25                             # commitment weight
    kmeans_init: bool = True
    kmeans_iters: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        self.input_views = _validated_input_views(self.views, self.input_views)
        self.hidden_dims = tuple(self.hidden_dims)
        _check_dims("hidden_dims", self.hidden_dims)
        _check_positive(latent_dim=self.latent_dim, levels=self.levels, kmeans_iters=self.kmeans_iters)
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {self.codebook_size}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")

    @property
    def used_views(self) -> tuple[str, ...]:
        return self.input_views if self.input_views is not None else tuple(self.views)


@dataclass
class RQKMeansConfig:
    """Residual k-means: no gradient training, k-means on residuals level by level."""

    views: dict[str, int]
    input_views: Optional[tuple[str, ...]] = None  # concatenated in order; None -> every view
    levels: int = 3
    codebook_size: int = 256
    iters: int = 25
    seed: int = 0

    def __post_init__(self) -> None:
        self.input_views = _validated_input_views(self.views, self.input_views)
        _check_positive(levels=self.levels, iters=self.iters)
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {self.codebook_size}")

    @property
    def used_views(self) -> tuple[str, ...]:
        return self.input_views if self.input_views is not None else tuple(self.views)
