"""User histories -> SID token sequences for next-token training, and prompts for decoding.

A training sequence is ``<bos> [ctx_1] sid(item_1) [ctx_2] sid(item_2) ... [ctx_n] sid(item_n)``
over the last ``max_items`` items of a history; the model learns every SID token given what
precedes it (HF causal LMs shift labels themselves). Context tokens (e.g. ``<hour_17>``) are
inputs only: they are known when we ask for a recommendation, so they are never targets
(label -100), and neither are <bos> and padding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .sid_vocabulary import SIDVocabulary

IGNORE_INDEX = -100  # the label value torch's cross-entropy (and HF's loss) skips


@dataclass
class SequenceConfig:
    max_items: int = 20  # window: the last N items of a history
    use_context: bool = False  # put each item's context tokens before its SID
    # "last": one window per user (its most recent items); "sliding": also earlier windows,
    # ending every `stride` items, so long histories are not cut to their tail.
    windows: Literal["last", "sliding"] = "last"
    stride: int = 10
    min_items: int = 1  # windows with fewer items are skipped

    def __post_init__(self) -> None:
        if self.max_items < 1 or self.stride < 1 or self.min_items < 1:
            raise ValueError("max_items, stride and min_items must be >= 1")
        if self.windows not in ("last", "sliding"):
            raise ValueError(f"windows must be 'last' or 'sliding', got {self.windows!r}")


ItemContexts = Sequence[Sequence[str]]  # per item: the names of its context tokens


def encode_items(
    items: Sequence[int],
    vocab: SIDVocabulary,
    contexts: ItemContexts | None = None,
    *,
    bos: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of ``[<bos>] [ctx] sid ...`` and a bool mask of which positions are SID tokens."""
    table = vocab.item_token_table
    sid = table[torch.as_tensor(list(items), dtype=torch.long)]  # [n, L + 1]
    if contexts is None:
        ids = sid.reshape(-1)
        is_sid = torch.ones_like(ids, dtype=torch.bool)
    else:
        if len(contexts) != len(items):
            raise ValueError(f"{len(contexts)} context entries for {len(items)} items")
        parts, flags = [], []
        for row, names in zip(sid, contexts):
            ctx = torch.tensor([vocab.token_id(n) for n in names], dtype=torch.long)
            parts += [ctx, row]
            flags += [torch.zeros(len(ctx), dtype=torch.bool), torch.ones(len(row), dtype=torch.bool)]
        ids = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
        is_sid = torch.cat(flags) if flags else torch.zeros(0, dtype=torch.bool)
    if bos:
        ids = torch.cat([torch.tensor([vocab.bos_id]), ids])
        is_sid = torch.cat([torch.tensor([False]), is_sid])
    return ids, is_sid


class SIDSequenceDataset(Dataset):
    """Training examples ``{"input_ids", "labels"}`` from users' chronological histories.

    ``histories[u]`` is user ``u``'s item indices (vocabulary rows) in time order, training part
    only; ``contexts[u][t]`` the context token names of that interaction (used only when
    ``config.use_context``). ``token_map`` translates our ids to a base model's ids.
    """

    def __init__(
        self,
        histories: Sequence[Sequence[int]],
        vocab: SIDVocabulary,
        config: SequenceConfig | None = None,
        contexts: Sequence[ItemContexts] | None = None,
        token_map: torch.Tensor | None = None,
    ) -> None:
        self.histories = histories
        self.vocab = vocab
        self.config = config or SequenceConfig()
        if self.config.use_context:
            if contexts is None:
                raise ValueError("use_context=True needs per-interaction contexts")
            if len(contexts) != len(histories):
                raise ValueError(f"{len(contexts)} context lists for {len(histories)} histories")
        self.contexts = contexts if self.config.use_context else None
        self.token_map = token_map
        self._windows = self._index_windows()

    def _index_windows(self) -> np.ndarray:
        """``[num_examples, 3]`` rows of (user, start, end) item positions."""
        cfg = self.config
        lengths = np.fromiter((len(h) for h in self.histories), dtype=np.int64, count=len(self.histories))
        if cfg.windows == "last":
            users = np.arange(len(lengths))
            ends = lengths
        else:
            # ends at len, len - stride, ...: counts per user, then one vectorised expansion
            counts = np.where(lengths > 0, (lengths - 1) // cfg.stride + 1, 0)
            users = np.repeat(np.arange(len(lengths)), counts)
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            ends = lengths[users] - offsets * cfg.stride
        starts = np.maximum(ends - cfg.max_items, 0)
        keep = (ends - starts) >= cfg.min_items
        return np.stack([users[keep], starts[keep], ends[keep]], axis=1)

    def __len__(self) -> int:
        return len(self._windows)

    def window_items(self) -> np.ndarray:
        """Items per example (its token length is proportional): for length-grouped batching."""
        return self._windows[:, 2] - self._windows[:, 1]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        user, start, end = (int(x) for x in self._windows[index])
        items = self.histories[user][start:end]
        ctx = self.contexts[user][start:end] if self.contexts is not None else None
        ids, is_sid = encode_items(items, self.vocab, ctx)
        labels = ids.masked_fill(~is_sid, IGNORE_INDEX)
        if self.token_map is not None:
            ids = self.token_map[ids]
            labels = torch.where(is_sid, ids, IGNORE_INDEX)
        return {"input_ids": ids, "labels": labels}


def encode_prompt(
    history: Sequence[int],
    vocab: SIDVocabulary,
    config: SequenceConfig | None = None,
    *,
    contexts: ItemContexts | None = None,
    next_context: Sequence[str] = (),
    token_map: torch.Tensor | None = None,
) -> torch.Tensor:
    """Decoder prompt: the last ``max_items`` items, then the next item's context tokens."""
    cfg = config or SequenceConfig()
    start = max(len(history) - cfg.max_items, 0)
    ctx = None
    if cfg.use_context:
        if contexts is None:
            raise ValueError("use_context=True needs the history's contexts")
        ctx = contexts[start:]
    ids, _ = encode_items(history[start:], vocab, ctx)
    if cfg.use_context and next_context:
        ids = torch.cat([ids, torch.tensor([vocab.token_id(n) for n in next_context], dtype=torch.long)])
    return token_map[ids] if token_map is not None else ids


class SequenceCollator:
    """Right-pads a list of examples into a batch; labels (if any) are -100 on padding.

    A class rather than a closure so DataLoader workers can pickle it.
    """

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, examples: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        lengths = torch.tensor([len(e["input_ids"]) for e in examples])
        width = int(lengths.max())
        positions = torch.arange(width)
        attention_mask = (positions < lengths[:, None]).long()
        input_ids = torch.full((len(examples), width), self.pad_id, dtype=torch.long)
        for row, e in enumerate(examples):
            input_ids[row, : len(e["input_ids"])] = e["input_ids"]
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "labels" in examples[0]:
            labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
            for row, e in enumerate(examples):
                labels[row, : len(e["labels"])] = e["labels"]
            batch["labels"] = labels
        return batch


def collate_prompts(prompts: Sequence[torch.Tensor], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad prompt tensors into ``input_ids`` / ``attention_mask`` for the decoder."""
    return SequenceCollator(pad_id)([{"input_ids": p} for p in prompts])
