"""Versioned tokenizer model directories in the lake (no Ray, no Spark: Spark workers import it).

Layout, under ``<lake>/<namespace>/_models/tokenizer/``::

    <kind>-<tokenizer_version>/
        model.pt        state_dict (CPU tensors)
        config.json     kind, model config, view dims + columns, tokenizer_version, provenance
        metrics.json    training metrics (per-epoch losses, items/s, best epoch, ...)
    LATEST_<kind>       name of the newest directory of that kind

``tokenizer_version`` = sha256 over the kind, the model config and the weights (names, dtypes,
shapes, bytes), first 16 hex digits: the same weights and config always give the same version,
and any change gives another. Directories are written to a temporary name and renamed into
place, and the pointer file is replaced atomically, so readers never see half a model.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

import torch
from torch import nn

from simcit.model_pointers import (_replace_file, latest_tokenizer_dir, read_pointer,  # noqa: F401 (re-exported)
                                   tokenizer_models_root, write_pointer)
from simcit.tokenizer import build_tokenizer
from simcit.train.model_config import config_from_dict, config_to_dict
from simcit.train.view_batches import VIEW_COLUMNS

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SavedTokenizer:
    model_dir: str
    tokenizer_version: str
    kind: str

    @property
    def name(self) -> str:
        return os.path.basename(self.model_dir)


def tokenizer_version(kind: str, model_config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"kind": kind, "model_config": model_config}, sort_keys=True,
                        separators=(",", ":")).encode())
    for name in sorted(state_dict):
        t = state_dict[name].detach().to("cpu").contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _write_json(path: str, data: Any) -> None:
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=False, default=str)
        fh.write("\n")


def save_tokenizer(
    model: nn.Module,
    models_root: str,
    *,
    metrics: Optional[Mapping[str, Any]] = None,
    extra: Optional[Mapping[str, Any]] = None,
    set_latest: bool = True,
) -> SavedTokenizer:
    """Write ``model`` (a tokenizer from ``simcit.tokenizer``) as ``<models_root>/<kind>-<version>``
    and point ``LATEST_<kind>`` at it. ``extra`` adds provenance keys to config.json (training
    settings, source table version, ...). An existing directory of the same version (same
    weights, same config) is kept as it is."""
    kind = model.kind
    model_config = config_to_dict(model.config)
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    version = tokenizer_version(kind, model_config, state)
    name = f"{kind}-{version}"
    final = os.path.join(models_root, name)
    os.makedirs(models_root, exist_ok=True)
    if not os.path.isdir(final):
        tmp = os.path.join(models_root, f".tmp-{name}-{uuid.uuid4().hex[:8]}")
        os.makedirs(tmp)
        try:
            torch.save(state, os.path.join(tmp, MODEL_FILE))
            views = dict(model_config["views"])
            _write_json(os.path.join(tmp, CONFIG_FILE), {
                "format": FORMAT_VERSION,
                "kind": kind,
                "tokenizer_version": version,
                "model_config": model_config,
                "views": views,
                "view_columns": {v: VIEW_COLUMNS[v] for v in views if v in VIEW_COLUMNS},
                "levels": model_config["levels"],
                "codebook_size": model_config["codebook_size"],
                "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                **dict(extra or {}),
            })
            _write_json(os.path.join(tmp, METRICS_FILE), dict(metrics or {}))
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    if set_latest:
        write_pointer(models_root, f"LATEST_{kind}", name)
    return SavedTokenizer(final, version, kind)


def load_tokenizer(model_dir: str, verify: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """The tokenizer of a model directory on CPU in eval mode, and its config.json (``meta``).
    ``verify`` recomputes the content hash and refuses a directory whose files do not match
    its ``tokenizer_version``."""
    with open(os.path.join(model_dir, CONFIG_FILE)) as fh:
        meta = json.load(fh)
    kind = meta["kind"]
    model = build_tokenizer(kind, config_from_dict(kind, meta["model_config"]))
    state = torch.load(os.path.join(model_dir, MODEL_FILE), map_location="cpu", weights_only=True)
    if verify:
        found = tokenizer_version(kind, meta["model_config"], state)
        if found != meta["tokenizer_version"]:
            raise ValueError(f"{model_dir}: content hash {found} != tokenizer_version "
                             f"{meta['tokenizer_version']} (corrupted or edited model directory)")
    model.load_state_dict(state)
    model.eval()
    return model, meta


