"""The recommender's token vocabulary: one token per (SID level, code) plus special/context tokens.

Token id layout (stable, so a trained model stays valid when context tokens are added later):
``[<pad>, <bos>, <eos>] + level-0 codes + level-1 codes + ... + context tokens (in order added)``.
Level ``l`` occupies ``codebook_sizes[l]`` consecutive ids starting at ``level_offsets[l]``, so a
(level, code) -> token id conversion is one addition and the decoder can gather a level's logits
with a single index tensor.
"""
from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

LEVEL_PREFIXES = string.ascii_lowercase  # <a_k>, <b_k>, ... by position in the SID
PAD_TOKEN, BOS_TOKEN, EOS_TOKEN = "<pad>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN)
FORMAT = "simcit.sid_vocabulary/1"
_SID_TOKEN = re.compile(r"<([a-z])_(\d+)>")


def sid_string(codes: Sequence[int]) -> str:
    """``(12, 3, 200, 0)`` -> ``"<a_12><b_3><c_200><d_0>"`` (the token format of SPEC §3)."""
    if len(codes) > len(LEVEL_PREFIXES):
        raise ValueError(f"a SID has at most {len(LEVEL_PREFIXES)} levels, got {len(codes)}")
    return "".join(f"<{LEVEL_PREFIXES[level]}_{int(code)}>" for level, code in enumerate(codes))


def parse_sid_string(text: str) -> tuple[int, ...]:
    """Inverse of :func:`sid_string`; rejects anything but consecutive level tokens a, b, c, ..."""
    matches = list(_SID_TOKEN.finditer(text))
    if not matches or "".join(m.group(0) for m in matches) != text:
        raise ValueError(f"not a SID string: {text!r}")
    for level, match in enumerate(matches):
        if match.group(1) != LEVEL_PREFIXES[level]:
            raise ValueError(f"{text!r}: level {level} must use prefix {LEVEL_PREFIXES[level]!r}")
    return tuple(int(m.group(2)) for m in matches)


class SIDVocabulary:
    """Item SIDs <-> token ids. Item ``i`` is row ``i`` of ``codes`` (the item index).

    ``codes`` has shape ``[num_items, L + 1]`` (L tokenizer levels + the disambiguation code) and
    must be one-to-one with items (SPEC §3 disambiguation guarantees it; we check).
    """

    def __init__(
        self,
        sids: Sequence[Sequence[int]] | np.ndarray,
        *,
        codebook_sizes: Sequence[int] | None = None,
        item_ids: Sequence[str] | None = None,
        tokenizer_version: str = "",
        table_version: int | None = None,
        context_tokens: Sequence[str] = (),
    ) -> None:
        codes = np.asarray(sids, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
            raise ValueError(f"sids must be a non-empty [num_items, levels] table, got shape {codes.shape}")
        if codes.shape[1] > len(LEVEL_PREFIXES):
            raise ValueError(f"at most {len(LEVEL_PREFIXES)} SID levels, got {codes.shape[1]}")
        if (codes < 0).any():
            raise ValueError("SID codes must be non-negative")
        observed = codes.max(axis=0) + 1
        if codebook_sizes is None:
            sizes = tuple(int(k) for k in observed)
        else:
            sizes = tuple(int(k) for k in codebook_sizes)
            if len(sizes) != codes.shape[1]:
                raise ValueError(f"{len(sizes)} codebook sizes for SIDs of length {codes.shape[1]}")
            too_big = np.nonzero(observed > np.asarray(sizes))[0]
            if too_big.size:
                lvl = int(too_big[0])
                raise ValueError(f"level {lvl} has code {observed[lvl] - 1} >= codebook size {sizes[lvl]}")
        if np.unique(codes, axis=0).shape[0] != codes.shape[0]:
            raise ValueError("two items share a SID; disambiguate before building the vocabulary")
        if item_ids is not None and len(item_ids) != codes.shape[0]:
            raise ValueError(f"{len(item_ids)} item ids for {codes.shape[0]} SIDs")

        self.codes = codes
        self.codebook_sizes = sizes
        self.item_ids = list(item_ids) if item_ids is not None else None
        self.tokenizer_version = tokenizer_version
        self.table_version = table_version
        self.level_offsets = tuple(int(x) for x in len(SPECIAL_TOKENS) + np.concatenate([[0], np.cumsum(sizes)[:-1]]))
        self._tokens: list[str] = list(SPECIAL_TOKENS) + [
            f"<{LEVEL_PREFIXES[level]}_{code}>" for level, size in enumerate(sizes) for code in range(size)
        ]
        self._token_ids = {tok: i for i, tok in enumerate(self._tokens)}
        self._num_sid_tokens = len(self._tokens)
        self._item_of_sid: dict[tuple[int, ...], int] | None = None  # built on first lookup
        self._token_table: torch.Tensor | None = None
        self.add_context_tokens(context_tokens)

    # ---- sizes and special ids -------------------------------------------------------------
    @property
    def num_items(self) -> int:
        return self.codes.shape[0]

    @property
    def sid_length(self) -> int:
        """Tokens per item: L tokenizer levels + 1 disambiguation level."""
        return self.codes.shape[1]

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    @property
    def tokens(self) -> list[str]:
        return list(self._tokens)

    @property
    def sid_tokens(self) -> list[str]:
        return self._tokens[len(SPECIAL_TOKENS) : self._num_sid_tokens]

    @property
    def context_tokens(self) -> list[str]:
        return self._tokens[self._num_sid_tokens :]

    pad_id = 0
    bos_id = 1
    eos_id = 2

    def token_id(self, token: str) -> int:
        try:
            return self._token_ids[token]
        except KeyError:
            raise KeyError(f"unknown token {token!r}; register context tokens with add_context_tokens") from None

    def token(self, token_id: int) -> str:
        return self._tokens[token_id]

    def add_context_tokens(self, names: Sequence[str]) -> list[int]:
        """Register context tokens (e.g. ``<hour_17>``) by name; idempotent. Returns their ids."""
        ids = []
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(f"context token names must be non-empty strings, got {name!r}")
            if name in self._token_ids:
                if self._token_ids[name] < self._num_sid_tokens:
                    raise ValueError(f"{name!r} is a special or SID token, not a context token")
            else:
                self._token_ids[name] = len(self._tokens)
                self._tokens.append(name)
            ids.append(self._token_ids[name])
        return ids

    # ---- SID <-> tokens <-> items ----------------------------------------------------------
    def sid_token_ids(self, codes: Sequence[int]) -> list[int]:
        """Token ids of one SID given by its codes (validated against the codebook sizes)."""
        if len(codes) != self.sid_length:
            raise ValueError(f"SID of length {len(codes)}, expected {self.sid_length}")
        out = []
        for level, code in enumerate(codes):
            if not 0 <= int(code) < self.codebook_sizes[level]:
                raise ValueError(f"code {code} out of range for level {level} (size {self.codebook_sizes[level]})")
            out.append(self.level_offsets[level] + int(code))
        return out

    def item_token_ids(self, item: int) -> list[int]:
        return [off + int(c) for off, c in zip(self.level_offsets, self.codes[item])]

    @property
    def item_token_table(self) -> torch.Tensor:
        """``[num_items, L + 1]`` token ids of every item (vectorised dataset / scoring use)."""
        if self._token_table is None:
            self._token_table = torch.from_numpy(self.codes + np.asarray(self.level_offsets, dtype=np.int64))
        return self._token_table

    def level_token_ids(self, level: int) -> torch.Tensor:
        """Token ids of every code of ``level`` in code order (``[codebook_sizes[level]]``)."""
        start = self.level_offsets[level]
        return torch.arange(start, start + self.codebook_sizes[level], dtype=torch.long)

    def codes_for_tokens(self, token_ids: Sequence[int]) -> tuple[int, ...]:
        """Codes of a SID token tuple; raises if a token is not the SID token of its level."""
        if len(token_ids) != self.sid_length:
            raise ValueError(f"{len(token_ids)} tokens, a SID has {self.sid_length}")
        codes = []
        for level, tok in enumerate(token_ids):
            code = int(tok) - self.level_offsets[level]
            if not 0 <= code < self.codebook_sizes[level]:
                raise ValueError(f"token {tok} is not a level-{level} SID token")
            codes.append(code)
        return tuple(codes)

    def item_index(self, token_ids: Sequence[int]) -> int | None:
        """Item index of a SID token tuple, or None if no item has that SID."""
        return self.item_for_codes(self.codes_for_tokens(token_ids))

    def item_for_codes(self, codes: Sequence[int]) -> int | None:
        if self._item_of_sid is None:
            self._item_of_sid = {tuple(row): i for i, row in enumerate(self.codes.tolist())}
        return self._item_of_sid.get(tuple(int(c) for c in codes))

    def sid_string(self, codes: Sequence[int]) -> str:
        return sid_string(codes)

    def item_sid_string(self, item: int) -> str:
        return sid_string(self.codes[item].tolist())

    # ---- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "tokenizer_version": self.tokenizer_version,
            "table_version": self.table_version,
            "codebook_sizes": list(self.codebook_sizes),
            "special_tokens": list(SPECIAL_TOKENS),
            "context_tokens": self.context_tokens,
            "item_ids": self.item_ids,
            "sids": self.codes.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SIDVocabulary":
        if data.get("format") != FORMAT:
            raise ValueError(f"not a SID vocabulary (format {data.get('format')!r}, expected {FORMAT!r})")
        if list(data["special_tokens"]) != list(SPECIAL_TOKENS):
            raise ValueError(f"special tokens {data['special_tokens']} differ from {list(SPECIAL_TOKENS)}")
        return cls(
            np.asarray(data["sids"], dtype=np.int64),
            codebook_sizes=data["codebook_sizes"],
            item_ids=data.get("item_ids"),
            tokenizer_version=data.get("tokenizer_version", ""),
            table_version=data.get("table_version"),
            context_tokens=data.get("context_tokens", ()),
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), separators=(",", ":")))
        tmp.replace(path)  # readers never see a half-written file
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SIDVocabulary":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def __repr__(self) -> str:
        return (
            f"SIDVocabulary(items={self.num_items}, levels={self.sid_length}, codebooks={self.codebook_sizes}, "
            f"context_tokens={len(self.context_tokens)}, tokenizer_version={self.tokenizer_version!r}, "
            f"table_version={self.table_version})"
        )
