"""``LATEST_<name>`` pointer files of versioned model directories, and where tokenizers live.

No torch here: a driver that only needs to find a model directory (assign-ids' Spark driver) reads
its pointer without importing the model code (``simcit.train.model_store`` re-exports these).
"""
from __future__ import annotations

import os
import uuid
from typing import Any, Union


def tokenizer_models_root(lake) -> str:
    """``<lake>/<namespace>/_models/tokenizer`` of a ``simcit.lake.Lake``."""
    return os.path.join(lake.root, lake.namespace, "_models", "tokenizer")


def _replace_file(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def write_pointer(root: str, pointer: str, name: str) -> None:
    """Point ``<root>/<pointer>`` (e.g. ``LATEST_simcit``) at the model directory ``name``, atomically."""
    _replace_file(os.path.join(root, pointer), name + "\n")


def read_pointer(root: str, pointer: str, missing: str) -> str:
    """The model directory a pointer file names; ``missing`` says what to run when there is none."""
    path = os.path.join(root, pointer)
    try:
        with open(path) as fh:
            name = fh.read().strip()
    except FileNotFoundError:
        raise FileNotFoundError(f"{missing}: {path} does not exist") from None
    model_dir = os.path.join(root, name)
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"{path} names {name!r}, which is not a directory under {root}")
    return model_dir


def latest_tokenizer_dir(lake_or_root: Union[str, Any], kind: str) -> str:
    """Directory named by ``LATEST_<kind>``; ``lake_or_root`` is a Lake or a models root path."""
    root = lake_or_root if isinstance(lake_or_root, (str, os.PathLike)) else tokenizer_models_root(lake_or_root)
    return read_pointer(root, f"LATEST_{kind}",
                        f"no trained {kind!r} tokenizer (run `simcit train-tokenizer --tokenizer {kind}` first)")
