"""Recommender model directories in the lake, tied to the SID table version they learned.

Layout, under ``<lake>/<namespace>/_models/recommender/``::

    <sid_table>-v<table_version>-<run_id>/
        config.json, model.safetensors, ...   ``save_pretrained`` (+ the base model's tokenizer)
        sid_vocabulary.json                    items, SIDs, tokenizer_version, table_version
        sid_token_map.json                     our token ids -> the model's
        recommender.json                       SID table + version, tokenizer, sequence/context
                                               settings, training config, provenance
        metrics.json                           per-epoch loss / valid Recall@10, best epoch
    LATEST_<sid_table>                         name of the newest directory for that table

Written under a temporary name and renamed into place; the pointer is replaced atomically.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from typing import Any, Optional

import torch
from transformers import AutoModelForCausalLM

from simcit.recommender import SIDVocabulary, save_recommender
from simcit.recommender.model import TOKEN_MAP_FILE, VOCAB_FILE
from simcit.recommender.sequence_dataset import SequenceConfig
from simcit.train.model_store import read_pointer, write_pointer

INFO_FILE = "recommender.json"
METRICS_FILE = "metrics.json"


class SIDTableMismatch(RuntimeError):
    """The recommender learned other SIDs than the table holds now."""


def recommender_models_root(lake) -> str:
    return os.path.join(lake.root, lake.namespace, "_models", "recommender")


@dataclass
class LoadedRecommender:
    model: torch.nn.Module
    vocab: SIDVocabulary
    token_map: Optional[torch.Tensor]  # None: the model's ids are the vocabulary's
    info: dict[str, Any]
    model_dir: str

    @property
    def sequence_config(self) -> SequenceConfig:
        return SequenceConfig(**self.info["sequence"])

    @property
    def context(self) -> str:
        return self.info["context"]


def save_recommender_dir(lake, model, vocab: SIDVocabulary, *, info: dict[str, Any], metrics: dict[str, Any],
                         token_map: Optional[torch.Tensor] = None, tokenizer: Any = None,
                         run_id: str) -> str:
    root = recommender_models_root(lake)
    os.makedirs(root, exist_ok=True)
    name = f"{info['sid_table']}-v{info['sid_table_version']}-{run_id}"
    final = os.path.join(root, name)
    tmp = os.path.join(root, f".tmp-{name}-{uuid.uuid4().hex[:8]}")
    try:
        save_recommender(tmp, model, vocab, token_map=token_map, tokenizer=tokenizer)
        with open(os.path.join(tmp, INFO_FILE), "w") as fh:
            json.dump(info, fh, indent=1, default=str)
        with open(os.path.join(tmp, METRICS_FILE), "w") as fh:
            json.dump(metrics, fh, indent=1, default=str)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_pointer(root, f"LATEST_{info['sid_table']}", name)
    return final


def latest_recommender_dir(lake, sid_table: str) -> str:
    return read_pointer(recommender_models_root(lake), f"LATEST_{sid_table}",
                        f"no recommender trained on {sid_table} (run `simcit train-recommender` first)")


def load_recommender_dir(model_dir: str, *, lake=None, sid_table: Optional[str] = None,
                         device: str | torch.device = "cpu") -> LoadedRecommender:
    """Load a recommender; with ``lake`` and ``sid_table``, refuse it unless the table is still at
    the version (and tokenizer) the model learned: other SIDs would make its outputs other items."""
    with open(os.path.join(model_dir, INFO_FILE)) as fh:
        info = json.load(fh)
    vocab = SIDVocabulary.load(os.path.join(model_dir, VOCAB_FILE))
    if lake is not None:
        table = sid_table or info["sid_table"]
        current = lake.version(table) if lake.exists(table) else None
        if table != info["sid_table"] or current != info["sid_table_version"]:
            raise SIDTableMismatch(
                f"recommender {model_dir} was trained on {info['sid_table']} v{info['sid_table_version']} "
                f"(tokenizer {info['tokenizer_version']}), but {table} is at "
                f"{'no version (missing)' if current is None else f'v{current}'} in this lake. Its SID tokens "
                f"would decode to other items: retrain it (`simcit train-recommender`) on the current table.")
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    model.config._attn_implementation = "sdpa"
    with open(os.path.join(model_dir, TOKEN_MAP_FILE)) as fh:
        ids = json.load(fh)["model_ids"]
    token_map = torch.tensor(ids, dtype=torch.long)
    if torch.equal(token_map, torch.arange(len(ids))):
        token_map = None
    return LoadedRecommender(model.to(device).eval(), vocab, token_map, info, model_dir)
