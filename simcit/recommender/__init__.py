"""Generative recommender over semantic IDs: vocabulary, model, data, trie and decoding.

Plain PyTorch + transformers (no Spark/Ray), so the same code runs in a unit test, a Ray worker
or a Spark UDF.
"""
from .decoding import BeamSearchOutput, constrained_beam_search
from .model import (
    BaseModel,
    RecommenderConfig,
    build_model,
    load_base_model,
    num_parameters,
    save_recommender,
)
from .sequence_dataset import (
    IGNORE_INDEX,
    SequenceCollator,
    SequenceConfig,
    SIDSequenceDataset,
    collate_prompts,
    encode_items,
    encode_prompt,
)
from .sid_trie import SIDTrie
from .sid_vocabulary import SIDVocabulary, parse_sid_string, sid_string

__all__ = [
    "BaseModel",
    "BeamSearchOutput",
    "IGNORE_INDEX",
    "RecommenderConfig",
    "SIDSequenceDataset",
    "SIDTrie",
    "SIDVocabulary",
    "SequenceCollator",
    "SequenceConfig",
    "build_model",
    "collate_prompts",
    "constrained_beam_search",
    "encode_items",
    "encode_prompt",
    "load_base_model",
    "num_parameters",
    "parse_sid_string",
    "save_recommender",
    "sid_string",
]
