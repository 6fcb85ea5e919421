"""The batch every tokenizer consumes: one feature matrix per view plus a presence mask.

An item may lack a view (no image, no interactions yet). Its row in that view's matrix is then
ignored: models mask it out of fusion and losses, never treat it as data.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import numpy as np
import torch
from torch import Tensor


@dataclass
class ViewBatch:
    features: dict[str, Tensor]   # view -> float [B, d_m]
    present: dict[str, Tensor]    # view -> bool [B]; False: the item lacks the view

    def __post_init__(self) -> None:
        if not self.features:
            raise ValueError("ViewBatch needs at least one view")
        if set(self.features) != set(self.present):
            raise ValueError(f"features views {sorted(self.features)} != present views {sorted(self.present)}")
        sizes = {name: x.shape[0] for name, x in self.features.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"views disagree on the batch size: {sizes}")
        for name, x in self.features.items():
            if x.dim() != 2:
                raise ValueError(f"features[{name!r}] must be [B, d], got shape {tuple(x.shape)}")
            mask = self.present[name]
            if mask.dtype != torch.bool or mask.shape != (x.shape[0],):
                raise ValueError(f"present[{name!r}] must be a bool tensor of shape [{x.shape[0]}]")

    @property
    def batch_size(self) -> int:
        return next(iter(self.features.values())).shape[0]

    @property
    def views(self) -> tuple[str, ...]:
        return tuple(self.features)

    def to(self, device: torch.device | str) -> "ViewBatch":
        return ViewBatch({k: v.to(device, non_blocking=True) for k, v in self.features.items()},
                         {k: v.to(device, non_blocking=True) for k, v in self.present.items()})

    def select(self, index: Tensor | slice) -> "ViewBatch":
        """Rows ``index`` of every view (a sub-batch, e.g. a k-means sample or one worker's shard)."""
        return ViewBatch({k: v[index] for k, v in self.features.items()},
                         {k: v[index] for k, v in self.present.items()})

    @staticmethod
    def concat(batches: list["ViewBatch"]) -> "ViewBatch":
        views = batches[0].views
        return ViewBatch({k: torch.cat([b.features[k] for b in batches]) for k in views},
                         {k: torch.cat([b.present[k] for b in batches]) for k in views})

    def concatenated(self, views: Mapping[str, int]) -> tuple[Tensor, Tensor]:
        """Views ``views`` (name -> dim, in order) side by side [B, sum d], absent rows zeroed,
        and the per-column presence mask [B, sum d] (for losses that must skip absent parts).
        A view the batch does not carry at all counts as absent for every item."""
        ref = next(iter(self.features.values()))
        xs, masks = [], []
        for name, dim in views.items():
            if name in self.features:
                x, mask = self.features[name], self.present[name]
                if x.shape[1] != dim:
                    raise ValueError(f"view {name!r}: expected dim {dim}, got {x.shape[1]}")
                xs.append(x.masked_fill(~mask.unsqueeze(1), 0.0))
            else:
                mask = torch.zeros(ref.shape[0], dtype=torch.bool, device=ref.device)
                xs.append(ref.new_zeros(ref.shape[0], dim))
            masks.append(mask.unsqueeze(1).expand(-1, dim))
        return torch.cat(xs, dim=1), torch.cat(masks, dim=1)

    @classmethod
    def from_numpy(
        cls,
        features: Mapping[str, np.ndarray],
        present: Optional[Mapping[str, np.ndarray]] = None,
        dtype: torch.dtype = torch.float32,
    ) -> "ViewBatch":
        """Build from arrays. Without ``present``, a row is missing where it has any NaN
        (how a null embedding usually arrives from Arrow/pandas); such rows are zeroed."""
        feats: dict[str, Tensor] = {}
        masks: dict[str, Tensor] = {}
        for name, arr in features.items():
            x = torch.as_tensor(np.ascontiguousarray(arr), dtype=dtype)
            if present is not None and name in present:
                mask = torch.as_tensor(np.asarray(present[name], dtype=bool))
            else:
                mask = ~torch.isnan(x).any(dim=1)
            if not bool(mask.all()):
                x = x.masked_fill(~mask[:, None], 0.0)
            feats[name], masks[name] = x, mask
        return cls(feats, masks)

    @classmethod
    def dense(cls, features: Mapping[str, Tensor]) -> "ViewBatch":
        """Every item has every view."""
        return cls(dict(features), {k: torch.ones(v.shape[0], dtype=torch.bool, device=v.device)
                                    for k, v in features.items()})
