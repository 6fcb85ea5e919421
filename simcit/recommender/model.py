"""The generative recommender: a Hugging Face decoder-only causal LM over SID tokens (SPEC §4).

Two ways to get one, same downstream code:
- ``build_model``: a small Qwen2/Llama built from ``RecommenderConfig`` and trained from scratch;
  its token ids *are* the vocabulary's ids.
- ``load_base_model``: a pretrained checkpoint from a local directory with the SID (and special
  and context) tokens added and the embeddings resized; a ``token_map`` tensor translates our
  vocabulary ids to the model's ids (``token_map[our_ids]``), so datasets, the trie and the
  decoder work unchanged on either model.

Token mapping of a base model:
- with a tokenizer in the directory: our tokens are added to it (``add_tokens``), so the
  saved tokenizer can render SIDs as text; <pad>/<bos>/<eos> reuse the tokenizer's own special
  tokens when it defines them.
- without a tokenizer (weights + config only): our whole vocabulary is appended after the
  model's rows: ``model id = old embedding rows + our id``. No tokenizer is needed because the
  recommender only ever feeds and reads token ids.
Either way the mapping is written to ``sid_token_map.json`` by ``save_recommender`` and reused
when the directory is loaded again, so loading a fine-tuned recommender adds nothing twice.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from .sid_vocabulary import BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, SIDVocabulary

TOKEN_MAP_FILE = "sid_token_map.json"
VOCAB_FILE = "sid_vocabulary.json"


@dataclass
class RecommenderConfig:
    """Architecture of a recommender trained from scratch (defaults: ~1.5M params on CPU)."""

    arch: Literal["qwen2", "llama"] = "qwen2"
    hidden_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int | None = None  # None: = num_heads (no grouped-query attention)
    intermediate_size: int = 512
    max_position_embeddings: int = 1024  # >= 1 + window * (SID length + context tokens)
    rope_theta: float = 10000.0
    attention_dropout: float = 0.0
    tie_word_embeddings: bool = True  # the output layer scores the same SID tokens it embeds
    initializer_range: float = 0.02
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"

    def __post_init__(self) -> None:
        if self.arch not in ("qwen2", "llama"):
            raise ValueError(f"arch must be 'qwen2' or 'llama', got {self.arch!r}")
        for name in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position_embeddings"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if (self.hidden_size // self.num_heads) % 2:
            raise ValueError("head dimension must be even (rotary embeddings)")
        kv = self.num_kv_heads or self.num_heads
        if self.num_heads % kv:
            raise ValueError(f"num_heads {self.num_heads} is not divisible by num_kv_heads {kv}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RecommenderConfig":
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown RecommenderConfig key(s) {unknown}; allowed: {sorted(cls.__dataclass_fields__)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_model(config: RecommenderConfig, vocab: SIDVocabulary) -> PreTrainedModel:
    """A randomly initialised causal LM whose vocabulary is exactly ``vocab``."""
    common = dict(
        vocab_size=vocab.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads or config.num_heads,
        max_position_embeddings=config.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        attention_dropout=config.attention_dropout,
        tie_word_embeddings=config.tie_word_embeddings,
        initializer_range=config.initializer_range,
        pad_token_id=vocab.pad_id,
        bos_token_id=vocab.bos_id,
        eos_token_id=vocab.eos_id,
    )
    if config.arch == "qwen2":
        hf_config, cls = Qwen2Config(**common), Qwen2ForCausalLM
    else:
        hf_config, cls = LlamaConfig(**common), LlamaForCausalLM
    hf_config._attn_implementation = config.attn_implementation
    return cls(hf_config)


def num_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


@dataclass
class BaseModel:
    """A pretrained LM with our tokens added. ``token_map[our_id]`` is the model's token id."""

    model: PreTrainedModel
    token_map: torch.Tensor  # [vocab.vocab_size] long
    tokenizer: Any | None  # the checkpoint's tokenizer (with our tokens added), if it had one

    @property
    def pad_id(self) -> int:
        return int(self.token_map[SIDVocabulary.pad_id])


def load_base_model(
    path: str | Path,
    vocab: SIDVocabulary,
    *,
    dtype: torch.dtype | None = None,
    mean_resizing: bool = True,
) -> BaseModel:
    """Load a causal LM from a LOCAL directory and add ``vocab``'s tokens to it (see module doc)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"base model directory {path} does not exist")
    kwargs: dict[str, Any] = {"local_files_only": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    tokenizer = _load_tokenizer(path)
    saved = _read_token_map(path)

    rows = model.get_input_embeddings().num_embeddings
    if saved is not None:
        n = min(len(saved["tokens"]), vocab.vocab_size)
        if saved["tokens"][:n] != vocab.tokens[:n]:
            raise ValueError(f"{path / TOKEN_MAP_FILE} was written for a different SID vocabulary")
    if tokenizer is not None:
        token_map = _add_to_tokenizer(tokenizer, vocab)  # idempotent: re-adding finds the same ids
        rows = max(rows, len(tokenizer))
    elif saved is not None:
        # a saved recommender: reuse its mapping; context tokens registered since go at the end
        token_map = saved["token_map"][: vocab.vocab_size]
        extra = vocab.vocab_size - token_map.numel()
        if extra > 0:
            token_map = torch.cat([token_map, torch.arange(extra) + rows])
            rows += extra
    else:
        token_map = torch.arange(vocab.vocab_size, dtype=torch.long) + rows
        rows += vocab.vocab_size
    if rows != model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(rows, mean_resizing=mean_resizing)
    _set_special_ids(model, token_map)
    return BaseModel(model=model, token_map=token_map, tokenizer=tokenizer)


def save_recommender(
    path: str | Path,
    model: PreTrainedModel,
    vocab: SIDVocabulary,
    token_map: torch.Tensor | None = None,
    tokenizer: Any | None = None,
) -> Path:
    """Write model (+ tokenizer), the SID vocabulary and the token map into one directory that
    ``load_base_model`` (or ``from_pretrained`` + ``SIDVocabulary.load``) reads back."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    vocab.save(path / VOCAB_FILE)
    if token_map is None:
        token_map = torch.arange(vocab.vocab_size)
    (path / TOKEN_MAP_FILE).write_text(
        json.dumps({"tokens": vocab.tokens, "model_ids": [int(i) for i in token_map.tolist()]})
    )
    return path


def _load_tokenizer(path: Path) -> Any | None:
    has_tokenizer = any(
        (path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
    )
    if not has_tokenizer:
        return None
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def _read_token_map(path: Path) -> dict[str, Any] | None:
    file = path / TOKEN_MAP_FILE
    if not file.exists():
        return None
    data = json.loads(file.read_text())
    return {"tokens": data["tokens"], "token_map": torch.tensor(data["model_ids"], dtype=torch.long)}


def _add_to_tokenizer(tokenizer: Any, vocab: SIDVocabulary) -> torch.Tensor:
    # Reuse the checkpoint's own specials where it has them (a pretrained LM knows its <bos>);
    # register ours in the standard slots where it has none.
    missing = {
        key: ours
        for key, ours in (("pad_token", PAD_TOKEN), ("bos_token", BOS_TOKEN), ("eos_token", EOS_TOKEN))
        if getattr(tokenizer, key) is None
    }
    if missing:
        tokenizer.add_special_tokens(missing)
    # SID/context tokens as special tokens: never split, never merged with neighbours.
    tokenizer.add_tokens(vocab.sid_tokens + vocab.context_tokens, special_tokens=True)
    names = [str(tokenizer.pad_token), str(tokenizer.bos_token), str(tokenizer.eos_token)] + vocab.tokens[3:]
    ids = tokenizer.convert_tokens_to_ids(names)
    if any(i is None for i in ids) or (tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids):
        raise RuntimeError("some SID tokens could not be added to the tokenizer")
    return torch.tensor(ids, dtype=torch.long)


def _set_special_ids(model: PreTrainedModel, token_map: torch.Tensor) -> None:
    pad, bos, eos = (int(token_map[i]) for i in (SIDVocabulary.pad_id, SIDVocabulary.bos_id, SIDVocabulary.eos_id))
    for cfg in (model.config, getattr(model, "generation_config", None)):
        if cfg is not None:
            cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id = pad, bos, eos
