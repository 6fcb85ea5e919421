"""Training at the edges: Ray Train / DeepSpeed loops and the versioned model store.

Importing this package (or ``simcit.train.model_store``, what Spark workers use to load a
tokenizer) does not import Ray; ``train_tokenizer`` imports it when first used.

    from simcit.train import train_tokenizer, load_tokenizer, latest_tokenizer_dir
"""
from __future__ import annotations

from simcit.train.item_split import valid_mask
from simcit.train.model_store import (SavedTokenizer, latest_tokenizer_dir, load_tokenizer, save_tokenizer,
                                      tokenizer_models_root, tokenizer_version)
from simcit.train.view_batches import VIEW_COLUMNS, to_view_batch


def __getattr__(name: str):
    if name in ("train_tokenizer", "TrainingOutcome"):
        from simcit.train import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'simcit.train' has no attribute {name!r}")


__all__ = ["SavedTokenizer", "TrainingOutcome", "VIEW_COLUMNS", "latest_tokenizer_dir", "load_tokenizer",
           "save_tokenizer", "to_view_batch", "tokenizer_models_root", "tokenizer_version", "train_tokenizer",
           "valid_mask"]
