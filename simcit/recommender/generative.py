"""A trained SID language model as a top-K recommender: item-id histories in, item-id lists out.

Glue between the evaluation protocol (item ids, histories) and the model (token ids): histories
become prompts (``encode_prompt``), prompts are decoded by ``constrained_beam_search`` in batches
of users, and returned item indices become item ids again. Plain PyTorch, so the same object
serves the training loop's validation, the ``evaluate`` stage and a notebook.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch

from .decoding import constrained_beam_search
from .repeat_prior import Candidates, recent_distinct
from .sid_scoring import score_sids
from .sequence_dataset import SequenceConfig, collate_prompts, encode_prompt
from .sid_trie import SIDTrie
from .sid_vocabulary import SIDVocabulary
from .time_context import time_tokens


class GenerativeRecommender:
    """``recommend(histories, k)`` (the ``TopKRecommender`` contract of simcit.evaluation)."""

    def __init__(
        self,
        model: torch.nn.Module,
        vocab: SIDVocabulary,
        sequence_config: SequenceConfig,
        *,
        token_map: Optional[torch.Tensor] = None,
        beam_size: int = 20,
        batch_users: int = 64,
        context: str = "none",
    ) -> None:
        if vocab.item_ids is None:
            raise ValueError("the vocabulary has no item ids; build it from a semantic_ids table")
        if context not in ("none", "time"):
            raise ValueError(f"context must be 'none' or 'time', got {context!r}")
        if context == "time" and not sequence_config.use_context:
            raise ValueError("context='time' needs a SequenceConfig with use_context=True")
        self.model = model
        self.vocab = vocab
        self.config = sequence_config
        self.token_map = token_map
        self.beam_size = beam_size
        self.batch_users = batch_users
        self.context = context
        self.trie = SIDTrie.from_vocabulary(vocab, token_map)
        self._index = pd.Index(vocab.item_ids)
        self._pad = int(token_map[vocab.pad_id]) if token_map is not None else vocab.pad_id
        self.unknown_items = 0  # history items without a SID (skipped), counted for the summary

    def item_indices(self, item_ids: Sequence[str]) -> np.ndarray:
        """Vocabulary rows of ``item_ids``; -1 for ids the SID table does not know."""
        return self._index.get_indexer(list(item_ids))

    def _prompt(self, history: Sequence[str], history_ts=None, next_ts=None) -> torch.Tensor:
        idx = self.item_indices(history)
        known = idx >= 0
        self.unknown_items += int((~known).sum())
        contexts = next_context = None
        if self.context == "time":
            if history_ts is None or next_ts is None:
                raise ValueError("context='time' needs the history's and the request's timestamps")
            contexts = [c for c, k in zip(time_tokens(history_ts), known) if k]
            next_context = time_tokens([next_ts])[0]
        return encode_prompt(idx[known].tolist(), self.vocab, self.config, contexts=contexts,
                             next_context=next_context or (), token_map=self.token_map)

    def _batches(self, histories, history_ts, next_ts):
        """``(start, stop, collated prompts)`` per batch of users."""
        for start in range(0, len(histories), self.batch_users):
            stop = min(start + self.batch_users, len(histories))
            prompts = [
                self._prompt(histories[u], history_ts[u] if history_ts is not None else None,
                             next_ts[u] if next_ts is not None else None)
                for u in range(start, stop)
            ]
            yield start, stop, collate_prompts(prompts, self._pad)

    @torch.inference_mode()
    def recommend_indices(
        self,
        histories: Sequence[Sequence[str]],
        k: int,
        history_ts: Optional[Sequence[Sequence]] = None,
        next_ts: Optional[Sequence] = None,
    ) -> np.ndarray:
        """``[users, k]`` item rows (-1 where fewer than k valid items exist), best first."""
        device = next(self.model.parameters()).device
        out = np.full((len(histories), k), -1, dtype=np.int64)
        for start, stop, batch in self._batches(histories, history_ts, next_ts):
            result = constrained_beam_search(
                self.model, batch["input_ids"].to(device), batch["attention_mask"].to(device), self.trie,
                beam_size=max(self.beam_size, 1), top_k=k)
            out[start:stop] = result.items.cpu().numpy()
        return out

    @torch.inference_mode()
    def candidates(
        self,
        histories: Sequence[Sequence[str]],
        k: int,
        history_items: int = 100,
        history_ts: Optional[Sequence[Sequence]] = None,
        next_ts: Optional[Sequence] = None,
    ) -> Candidates:
        """Beam search's top-``k`` plus the ``history_items`` most recent distinct items of each
        user's history, all with their LM log-probabilities (the input of ``repeat_prior.rank``).
        The history items are scored exactly, whether or not the beams reached them."""
        device = next(self.model.parameters()).device
        table = self.vocab.item_token_table
        if self.token_map is not None:
            table = self.token_map[table]
        rows = [self.item_indices(h) for h in histories]
        rows = [r[r >= 0] for r in rows]
        recent = [recent_distinct(r, history_items) for r in rows]
        parts = []
        for start, stop, batch in self._batches(histories, history_ts, next_ts):
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            beams = constrained_beam_search(self.model, ids, mask, self.trie, beam_size=max(self.beam_size, 1), top_k=k)
            width = max((len(r) for r in recent[start:stop]), default=0)
            hist = np.full((stop - start, width), -1, dtype=np.int64)
            for row, r in enumerate(recent[start:stop]):
                hist[row, : len(r)] = r
            hist_logp = np.full(hist.shape, -np.inf)
            if width:
                cand_tokens = table[torch.from_numpy(hist.clip(min=0))]  # [users, C, depth]
                logp = score_sids(self.model, ids, mask, cand_tokens.to(device)).float().cpu().numpy()
                hist_logp = np.where(hist >= 0, logp, -np.inf)
            parts.append(Candidates(beams.items.cpu().numpy(), beams.scores.float().cpu().numpy(), hist, hist_logp,
                                    rows[start:stop]))
        if not parts:
            empty = np.zeros((0, k))
            return Candidates(empty.astype(np.int64), empty, empty.astype(np.int64), empty, [])
        return Candidates.concat(parts)

    def recommend(self, histories: Sequence[Sequence[str]], k: int, history_ts=None, next_ts=None) -> list[list[str]]:
        rows = self.recommend_indices(histories, k, history_ts, next_ts)
        ids = self.vocab.item_ids
        return [[ids[i] for i in row if i >= 0] for row in rows]
