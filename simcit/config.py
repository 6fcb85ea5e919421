"""Typed pipeline configuration: one YAML per dataset (``configs/nyc.yaml`` ...).

Relative file paths in a config are resolved against the directory holding the YAML file, so a
config works whatever the current directory is.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from simcit.typed_config import ConfigError, apply_override, build

TimestampFormat = Literal["unix_seconds", "unix_millis", "iso", "ordinal"]


@dataclass
class ItemColumns:
    """Where each canonical ``items`` column comes from in the raw item file."""

    item_id: str
    latitude: Optional[str] = None
    longitude: Optional[str] = None
    image_uri: Optional[str] = None
    # Raw columns carried into ``items.attributes`` (a string map) for downstream use.
    keep: list[str] = field(default_factory=list)


@dataclass
class InteractionColumns:
    user_id: str
    item_id: str
    ts: str
    # unix_seconds / unix_millis: numbers; iso: "YYYY-mm-dd HH:MM:SS" (UTC unless an offset is
    # given); ordinal: the file carries an order (e.g. Amazon positions), not a time: position k
    # becomes 1970-01-01T00:00:00Z + k seconds, which keeps the order and says so honestly.
    ts_format: TimestampFormat = "unix_seconds"


@dataclass
class DatasetConfig:
    name: str
    items: str
    interactions: str
    item_columns: ItemColumns
    interaction_columns: InteractionColumns
    # Text of an item: each part is a template "{column}"-style; a part is used only when every
    # column it names is non-empty, and parts are joined by ``text_separator``.
    text_template: list[str]
    text_separator: str = ". "
    csv_delimiter: str = ","

    def __post_init__(self) -> None:
        if not self.text_template:
            raise ValueError("text_template must list at least one part")


@dataclass
class TextViewConfig:
    enabled: bool = True
    batch_size: int = 128
    max_seq_length: int = 128


@dataclass
class ImageViewConfig:
    enabled: bool = True
    batch_size: int = 16
    image_size: int = 224


@dataclass
class GeoViewConfig:
    """Spatial + mobility POI graph, embedded by a distributed randomised eigendecomposition."""

    enabled: bool = True
    ring_resolution: int = 9          # H3 resolution of the neighbour rings (res 9 edge ~ 174 m)
    ring_k: int = 1                   # grid distance of neighbouring cells joined
    max_neighbors: int = 16           # nearest spatial neighbours kept per POI (bounds edges)
    # Candidates taken from one ring cell at most (a hash-chosen, deterministic subset): bounds
    # the distance computations in pathological cells (a mall with 2,000 POIs) to
    # max_cell_candidates x 7 per POI.
    max_cell_candidates: int = 128
    # H3 resolution of the regions the spatial kNN runs in (one vectorised Python task per
    # region, each also receiving the neighbouring cells its POIs' rings reach, res 5 ~ 250 km²):
    # coarser means fewer, larger tasks and fewer POIs duplicated into a neighbour's halo.
    region_resolution: int = 5
    cell_resolutions: list[int] = field(default_factory=lambda: [6, 7])  # POI-cell edges
    mobility_max_gap_hours: float = 24.0
    spatial_weight: float = 1.0
    mobility_weight: float = 1.0
    cell_weight: float = 0.5
    dim: int = 64
    oversample: int = 8
    power_iters: int = 1
    seed: int = 7

    def __post_init__(self) -> None:
        if not 0 <= self.ring_resolution <= 15:
            raise ValueError("ring_resolution must be an H3 resolution in 0..15")
        if not 0 <= self.region_resolution <= self.ring_resolution:
            raise ValueError("region_resolution must be an H3 resolution in 0..ring_resolution")
        if any(not 0 <= r <= 15 for r in self.cell_resolutions):
            raise ValueError("cell_resolutions must be H3 resolutions in 0..15")
        if self.dim < 1 or self.max_neighbors < 1 or self.ring_k < 0 or self.max_cell_candidates < 1:
            raise ValueError("dim, max_neighbors and max_cell_candidates must be >= 1, ring_k >= 0")


@dataclass
class CFViewConfig:
    """Item co-occurrence within a window of training sequences -> PPMI -> truncated SVD."""

    enabled: bool = True
    window: int = 3
    min_count: int = 1
    dim: int = 64
    oversample: int = 8
    power_iters: int = 1
    seed: int = 11


@dataclass
class FeaturesConfig:
    text: TextViewConfig = field(default_factory=TextViewConfig)
    image: ImageViewConfig = field(default_factory=ImageViewConfig)
    geo: GeoViewConfig = field(default_factory=GeoViewConfig)
    cf: CFViewConfig = field(default_factory=CFViewConfig)
    h3_resolutions: list[int] = field(default_factory=lambda: [7, 8, 9])


@dataclass
class SequencesConfig:
    max_history: int = 50
    collapse_repeats: bool = False

    def __post_init__(self) -> None:
        if self.max_history < 1:
            raise ValueError("max_history must be >= 1")


ViewName = Literal["text", "image", "geo", "cf"]


@dataclass
class TokenizerTrainingConfig:
    """``train-tokenizer``: which tokenizer, on which views, trained how and where."""

    kind: Literal["simcit", "rqvae", "rqkmeans"] = "simcit"
    views: list[ViewName] = field(default_factory=lambda: ["text", "geo", "cf"])
    levels: int = 3                   # L
    codebook_size: int = 256          # K
    latent_dim: int = 128             # D
    batch_size: int = 256             # per worker
    epochs: int = 20
    lr: float = 2e-4
    weight_decay: float = 1e-3
    warmup_fraction: float = 0.05
    gumbel_tau: float = 0.2
    temperature: float = 0.07
    valid_fraction: float = 0.05      # items held out for the hard-code validation loss
    num_workers: int = 1
    strategy: Literal["ddp", "deepspeed"] = "ddp"
    deepspeed_config: str = "../cluster/deepspeed_tokenizer.json"
    seed: int = 0
    # Further keys of the tokenizer's model config (SimCITConfig / RQVAEConfig / RQKMeansConfig),
    # e.g. {hidden_dims: [512, 384, 256], codebook_lr_scale: 10.0}.
    model: dict[str, Any] = field(default_factory=dict)
    sample_size: int = 16384          # training items sampled (streamed) for k-means init / RQ-KMeans
    cpus_per_worker: float = 1.0      # Ray CPUs (= torch threads) per training worker
    use_gpu: Optional[bool] = None    # None: GPU workers (NCCL) if the Ray cluster has the GPUs
    max_failures: int = 2             # worker failures survived by resuming from the last checkpoint
    checkpoints_to_keep: int = 2      # best by hard-code validation loss (plus always the latest)
    # Items whose embeddings fit in this many MB (estimated) are read once and cached in Ray's
    # object store; larger tables stream from the lake every epoch. 0: always stream.
    cache_mb: int = 1024
    ray_address: Optional[str] = None  # None: $RAY_ADDRESS if set, else a local Ray
    # Fault injection (tests): one worker raises once at the start of this epoch (>= 1).
    fail_at_epoch: Optional[int] = None

    def __post_init__(self) -> None:
        if not self.views:
            raise ValueError("views must name at least one of text, image, geo, cf")
        if self.levels < 1 or self.codebook_size < 2 or self.batch_size < 2 or self.num_workers < 1:
            raise ValueError("levels >= 1, codebook_size >= 2, batch_size >= 2, num_workers >= 1")
        if not 0 < self.valid_fraction < 0.5:
            raise ValueError("valid_fraction must be in (0, 0.5)")
        if self.epochs < 1 or self.sample_size < 1 or self.cpus_per_worker <= 0:
            raise ValueError("epochs >= 1, sample_size >= 1, cpus_per_worker > 0")
        if self.max_failures < -1 or self.checkpoints_to_keep < 1 or self.cache_mb < 0:
            raise ValueError("max_failures >= -1 (-1: unlimited), checkpoints_to_keep >= 1, cache_mb >= 0")
        if self.fail_at_epoch is not None and self.fail_at_epoch < 1:
            raise ValueError("fail_at_epoch must be >= 1 (a resume needs a checkpoint from an earlier epoch)")


@dataclass
class AssignIdsConfig:
    """``assign-ids``: which tokenizer model, and which table to write."""

    model_dir: Optional[str] = None     # default: the latest trained model of tokenizer.kind
    # Written to ``semantic_ids__<table_tag>`` instead of ``semantic_ids`` when set, so SIDs of
    # several tokenizers can live side by side (e.g. for the quality benchmark).
    table_tag: Optional[str] = None

    def __post_init__(self) -> None:
        if self.table_tag is not None and not self.table_tag.replace("_", "").isalnum():
            raise ValueError("table_tag must be letters, digits and underscores")


@dataclass
class RecommenderTrainingConfig:
    """``train-recommender``: the generative recommender over a semantic-ID table (SPEC §4)."""

    # SID table to learn over: None -> the table assign-ids writes (``semantic_ids`` or
    # ``semantic_ids__<assign_ids.table_tag>``); else a table name such as ``semantic_ids__rqvae``.
    sid_table: Optional[str] = None
    # Keys of simcit.recommender.RecommenderConfig (arch, hidden_size, num_layers, ...) for a
    # model trained from scratch; ignored with base_model.
    model: dict[str, Any] = field(default_factory=dict)
    base_model: Optional[str] = None    # local directory of a pretrained causal LM (--base-model)
    window: int = 20                    # items of history per training sequence / prompt
    windows: Literal["last", "sliding"] = "sliding"
    stride: int = 10                    # sliding windows end every `stride` items
    context: Literal["none", "time"] = "none"  # "time": an hour-of-week token before every SID
    batch_size: int = 64                # sequences per worker step
    # Batches of windows of similar length (shuffled): far less padding where histories are
    # short and uneven (simcit/recommender/length_grouping.py); false: plain random batches.
    group_by_length: bool = True
    epochs: int = 20
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    gradient_clipping: float = 1.0
    num_workers: int = 1
    strategy: Literal["ddp", "deepspeed"] = "deepspeed"
    deepspeed_config: str = "../cluster/deepspeed_recommender.json"
    seed: int = 0
    valid_users: int = 1000             # users whose valid Recall@10 decides early stopping
    patience: int = 3                   # epochs without a better valid Recall@10 before stopping
    beam_size: int = 20                 # beam of the validation decoding
    cpus_per_worker: float = 1.0
    use_gpu: Optional[bool] = None
    max_failures: int = 2
    checkpoints_to_keep: int = 2
    # Training rows estimated under this many MB are cached in Ray's object store (read once);
    # larger tables stream from the lake every epoch. 0: always stream.
    cache_mb: int = 1024
    ray_address: Optional[str] = None
    fail_at_epoch: Optional[int] = None

    def __post_init__(self) -> None:
        if self.window < 1 or self.stride < 1 or self.batch_size < 1 or self.epochs < 1:
            raise ValueError("window, stride, batch_size and epochs must be >= 1")
        if self.num_workers < 1 or self.cpus_per_worker <= 0 or self.valid_users < 1 or self.beam_size < 1:
            raise ValueError("num_workers >= 1, cpus_per_worker > 0, valid_users >= 1, beam_size >= 1")
        if self.patience < 1 or self.checkpoints_to_keep < 1 or self.max_failures < -1:
            raise ValueError("patience >= 1, checkpoints_to_keep >= 1, max_failures >= -1")
        if self.fail_at_epoch is not None and self.fail_at_epoch < 1:
            raise ValueError("fail_at_epoch must be >= 1")
        if self.sid_table is not None and not self.sid_table.startswith("semantic_ids"):
            raise ValueError("sid_table must name a semantic_ids table, e.g. semantic_ids__rqvae")


FloorName = Literal["mostpop", "markov", "repeat", "itemknn", "sasrec"]


@dataclass
class EvaluateConfig:
    """``evaluate``: constrained beam search + floors on valid and test, into ``eval_metrics``."""

    model_dir: Optional[str] = None     # default: the latest recommender of the SID table
    beam_size: int = 20                 # >= the largest K (20): top-K comes from the last beam step
    batch_users: int = 64
    ks: list[int] = field(default_factory=lambda: [1, 5, 10, 20])
    # Floors evaluated next to the model on the same users (tuned on valid, see
    # simcit.evaluation.run_baselines.GRIDS); [] to skip.
    baselines: list[FloorName] = field(default_factory=lambda: ["mostpop", "markov", "itemknn"])
    tune_users: int = 2000              # valid users the floors' grid search looks at
    cold_threshold: int = 5             # test targets seen fewer times in training are "cold"
    limit_users: Optional[int] = None   # evaluate only the first N users per split (smoke runs)
    # Rank only the first N valid users (test always gets every user, up to limit_users): valid
    # metrics are a diagnostic; the quality benchmark sets it to spend its budget on test.
    valid_users: Optional[int] = None
    # Also report the model with a copy prior over the user's own history (a mixture weight and
    # recency decay tuned on the same valid users as the floors; simcit.recommender.repeat_prior),
    # as "generative:<sids>+repeat", beside the plain model.
    repeat_prior: bool = True
    history_candidates: int = 100       # most recent distinct history items scored for the prior

    def __post_init__(self) -> None:
        if self.beam_size < 1 or self.batch_users < 1 or self.tune_users < 1 or self.cold_threshold < 1:
            raise ValueError("beam_size, batch_users, tune_users and cold_threshold must be >= 1")
        if self.history_candidates < 1:
            raise ValueError("history_candidates must be >= 1")
        if (self.valid_users is not None and self.valid_users < 1) or (self.limit_users is not None and self.limit_users < 1):
            raise ValueError("valid_users and limit_users must be >= 1 when set")
        if not self.ks or min(self.ks) < 1:
            raise ValueError("ks must be a non-empty list of positive integers")


@dataclass
class SparkConfig:
    master: str = "local[2]"
    driver_memory: str = "4g"
    shuffle_partitions: int = 4
    arrow_batch_rows: int = 2048
    # Embedded JVM only: start from a class-data-sharing archive (simcit/jvm_class_archive.py).
    class_archive: bool = True
    conf: dict[str, str] = field(default_factory=dict)


@dataclass
class PipelineConfig:
    namespace: str
    dataset: DatasetConfig
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    sequences: SequencesConfig = field(default_factory=SequencesConfig)
    tokenizer: TokenizerTrainingConfig = field(default_factory=TokenizerTrainingConfig)
    assign_ids: AssignIdsConfig = field(default_factory=AssignIdsConfig)
    recommender: RecommenderTrainingConfig = field(default_factory=RecommenderTrainingConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    # Set by load_config: the directory relative paths are resolved against.
    base_dir: str = "."

    def sid_table(self) -> str:
        """The semantic-ID table the recommender stages use."""
        if self.recommender.sid_table:
            return self.recommender.sid_table
        tag = self.assign_ids.table_tag
        return f"semantic_ids__{tag}" if tag else "semantic_ids"

    def resolve(self, path: str) -> str:
        """Absolute form of a (possibly relative) path from the config."""
        p = Path(path)
        return str(p if p.is_absolute() or "://" in path else (Path(self.base_dir) / p).resolve())


def load_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read, override and validate a pipeline YAML; raise ConfigError with the key on error."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    with path.open() as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    data = copy.deepcopy(data)
    for item in overrides or []:
        apply_override(data, item)
    if "base_dir" in data:
        raise ConfigError(f"{path}: base_dir is set by the loader, not the file")
    data["base_dir"] = str(path.resolve().parent)
    return build(PipelineConfig, data, "config")


__all__ = ["ConfigError", "PipelineConfig", "load_config"]
