"""Prefix trie over all valid SIDs, held in tensors so the decoder can mask a whole batch at once.

Nodes at depth ``l`` (prefixes of length ``l``) are numbered ``0 .. num_nodes[l] - 1`` in
lexicographic order; depth 0 has the single root, depth ``L + 1`` holds the leaves (= items).
Level ``l``'s transitions map ``(node at depth l, code) -> node at depth l + 1`` or -1. They are
stored in code space (code = token id - level offset); ``level_token_ids[l][code]`` gives the
model's token id, so the same trie serves models whose SID tokens were appended to a larger
pretrained vocabulary.

Storage per level: a dense ``[num_nodes, K]`` table when it fits ``dense_limit`` entries (a
gather per step), else the sorted edge keys ``node * K + code`` (a ``searchsorted`` per step), so
memory stays O(edges) at millions of items (the disambiguation level has ~one node per item).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

DEFAULT_DENSE_LIMIT = 1 << 24  # entries; int32 -> 64 MiB per level at most


@dataclass
class _Level:
    size: int  # codebook size K of this level
    dense: torch.Tensor | None  # [num_nodes, K] int32, -1 = no edge
    keys: torch.Tensor | None  # [num_edges] int64 sorted node * K + code
    values: torch.Tensor | None  # [num_edges] int32 child node

    def to(self, device: torch.device | str) -> "_Level":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return _Level(self.size, move(self.dense), move(self.keys), move(self.values))


class SIDTrie:
    def __init__(
        self,
        levels: list[_Level],
        num_nodes: list[int],
        leaf_item: torch.Tensor,
        level_token_ids: list[torch.Tensor],
    ) -> None:
        self._levels = levels
        self.num_nodes = num_nodes
        self.leaf_item = leaf_item  # [num_leaves] item index of each leaf node
        self.level_token_ids = level_token_ids  # [K_l] model token id of each code, per level

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def from_codes(
        cls,
        codes: np.ndarray | torch.Tensor | Sequence[Sequence[int]],
        *,
        codebook_sizes: Sequence[int] | None = None,
        level_token_ids: Sequence[torch.Tensor] | None = None,
        dense_limit: int = DEFAULT_DENSE_LIMIT,
    ) -> "SIDTrie":
        """Build from an ``[num_items, depth]`` code table; row ``i`` is item ``i``."""
        codes = np.asarray(codes.cpu() if isinstance(codes, torch.Tensor) else codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[0] == 0:
            raise ValueError(f"codes must be a non-empty [num_items, depth] table, got {codes.shape}")
        n, depth = codes.shape
        sizes = tuple(int(k) for k in (codebook_sizes if codebook_sizes is not None else codes.max(axis=0) + 1))
        if len(sizes) != depth or (codes < 0).any() or (codes >= np.asarray(sizes)).any():
            raise ValueError("codes out of range of codebook_sizes")

        # Lexicographic sort: then every prefix is a contiguous run and node ids are cumsums of
        # "prefix changed" flags -- no per-item Python loop.
        order = np.lexsort(codes.T[::-1])
        s = codes[order]
        changed = np.zeros(n, dtype=bool)  # prefix of length l differs from the previous row
        changed[0] = True
        node = np.zeros(n, dtype=np.int64)  # depth-0 node of every row: the root
        levels, num_nodes = [], [1]
        for level in range(depth):
            diff = np.empty(n, dtype=bool)
            diff[0] = True
            diff[1:] = s[1:, level] != s[:-1, level]
            child_changed = changed | diff
            child = np.cumsum(child_changed) - 1
            first = np.nonzero(child_changed)[0]  # one row per distinct edge, in key order
            k = sizes[level]
            num_parent = num_nodes[-1]
            if num_parent * k <= dense_limit:
                dense = np.full((num_parent, k), -1, dtype=np.int32)
                dense[node[first], s[first, level]] = child[first]
                levels.append(_Level(k, torch.from_numpy(dense), None, None))
            else:
                keys = node[first] * k + s[first, level]  # already strictly increasing
                levels.append(
                    _Level(k, None, torch.from_numpy(keys), torch.from_numpy(child[first].astype(np.int32)))
                )
            num_nodes.append(int(child[-1]) + 1)
            changed, node = child_changed, child
        if num_nodes[-1] != n:
            raise ValueError(f"{n - num_nodes[-1]} duplicate SIDs: items and SIDs must be one-to-one")
        leaf_item = torch.from_numpy(order.copy())  # leaves are numbered in sorted-row order

        if level_token_ids is None:
            level_token_ids = [torch.arange(k) for k in sizes]  # code space == token space
        token_ids = [torch.as_tensor(t, dtype=torch.long) for t in level_token_ids]
        if [t.numel() for t in token_ids] != list(sizes):
            raise ValueError("level_token_ids must have one token id per code of each level")
        return cls(levels, num_nodes, leaf_item, token_ids)

    @classmethod
    def from_vocabulary(
        cls, vocab, token_map: torch.Tensor | None = None, dense_limit: int = DEFAULT_DENSE_LIMIT
    ) -> "SIDTrie":
        """Trie of a :class:`SIDVocabulary`'s items, emitting the vocabulary's token ids, or the
        model's ids when ``token_map`` (ours -> model's, from ``load_base_model``) is given."""
        token_ids = [vocab.level_token_ids(level) for level in range(vocab.sid_length)]
        if token_map is not None:
            token_ids = [token_map[t] for t in token_ids]
        return cls.from_codes(
            vocab.codes, codebook_sizes=vocab.codebook_sizes, level_token_ids=token_ids, dense_limit=dense_limit
        )

    # ---- queries ---------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """SID length (L + 1)."""
        return len(self._levels)

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return tuple(lv.size for lv in self._levels)

    @property
    def device(self) -> torch.device:
        return self.leaf_item.device

    def to(self, device: torch.device | str) -> "SIDTrie":
        return SIDTrie(
            [lv.to(device) for lv in self._levels],
            list(self.num_nodes),
            self.leaf_item.to(device),
            [t.to(device) for t in self.level_token_ids],
        )

    def transition_table(self, level: int) -> torch.Tensor:
        """Dense ``[num_nodes[level], K]`` table (materialised if stored sparse: small tries only)."""
        nodes = torch.arange(self.num_nodes[level], device=self.device)
        return self.children(level, nodes)

    def children(self, level: int, nodes: torch.Tensor) -> torch.Tensor:
        """``[..., K]`` child node for every code of ``level`` from each of ``nodes`` (-1: none).

        Nodes < 0 (dead beams) have no children.
        """
        lv = self._levels[level]
        safe = nodes.clamp(min=0).long()
        if lv.dense is not None:
            out = lv.dense[safe].long()
        else:
            codes = torch.arange(lv.size, device=safe.device)
            query = safe.unsqueeze(-1) * lv.size + codes
            pos = torch.searchsorted(lv.keys, query).clamp(max=lv.keys.numel() - 1)
            out = torch.where(lv.keys[pos] == query, lv.values[pos].long(), -1)
        return out.masked_fill((nodes < 0).unsqueeze(-1), -1)

    def step(self, level: int, nodes: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Child of each node along one code each (-1 where the edge does not exist)."""
        lv = self._levels[level]
        codes = codes.long()
        bad = (nodes < 0) | (codes < 0) | (codes >= lv.size)
        safe_nodes, safe_codes = nodes.clamp(min=0).long(), codes.clamp(0, lv.size - 1)
        if lv.dense is not None:
            out = lv.dense[safe_nodes, safe_codes].long()
        else:
            query = safe_nodes * lv.size + safe_codes
            pos = torch.searchsorted(lv.keys, query).clamp(max=lv.keys.numel() - 1)
            out = torch.where(lv.keys[pos] == query, lv.values[pos].long(), -1)
        return out.masked_fill(bad, -1)

    def walk(self, codes: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Node reached by each code prefix (``[..., l]`` codes, l <= depth) or -1 if invalid."""
        codes = torch.as_tensor(codes, dtype=torch.long, device=self.device)
        if codes.shape[-1] > self.depth:
            raise ValueError(f"prefix of length {codes.shape[-1]} > SID length {self.depth}")
        node = torch.zeros(codes.shape[:-1], dtype=torch.long, device=self.device)
        for level in range(codes.shape[-1]):
            node = self.step(level, node, codes[..., level])
        return node

    def is_valid_prefix(self, codes: Sequence[int]) -> bool:
        return bool(self.walk(codes) >= 0)

    def item_of(self, codes: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Item index of each full SID (``[..., depth]`` codes), -1 where it is no item's SID."""
        codes = torch.as_tensor(codes, dtype=torch.long, device=self.device)
        if codes.shape[-1] != self.depth:
            raise ValueError(f"full SIDs have {self.depth} codes, got {codes.shape[-1]}")
        return self.leaf_items(self.walk(codes))

    def leaf_items(self, leaves: torch.Tensor) -> torch.Tensor:
        return torch.where(leaves >= 0, self.leaf_item[leaves.clamp(min=0)], -1)

    def __repr__(self) -> str:
        kinds = ["dense" if lv.dense is not None else "sparse" for lv in self._levels]
        return f"SIDTrie(depth={self.depth}, nodes={self.num_nodes}, storage={kinds})"
