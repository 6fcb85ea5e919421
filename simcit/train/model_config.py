"""The tokenizer's model config, resolved from the pipeline's ``tokenizer`` section and the
embedding dims found in ``item_features``; and its JSON form (what a model directory stores)."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from simcit.config import TokenizerTrainingConfig
from simcit.tokenizer import TokenizerConfig, config_class
from simcit.typed_config import build


def tokenizer_model_config(tcfg: TokenizerTrainingConfig, view_dims: Mapping[str, int]) -> TokenizerConfig:
    """SimCITConfig / RQVAEConfig / RQKMeansConfig for ``tcfg.kind``: the shared knobs of the
    ``tokenizer`` section, then its ``model`` mapping on top (validated; bad keys are named)."""
    values: dict[str, Any] = {"views": dict(view_dims), "levels": tcfg.levels,
                              "codebook_size": tcfg.codebook_size, "seed": tcfg.seed}
    if tcfg.kind == "simcit":
        values.update(latent_dim=tcfg.latent_dim, gumbel_tau=tcfg.gumbel_tau, temperature=tcfg.temperature)
    elif tcfg.kind == "rqvae":
        values.update(latent_dim=tcfg.latent_dim)
    if "views" in tcfg.model:
        raise ValueError("tokenizer.model.views is derived from tokenizer.views and the data; do not set it")
    values.update(tcfg.model)
    return config_from_dict(tcfg.kind, values, path="tokenizer.model")


def config_to_dict(config: TokenizerConfig) -> dict[str, Any]:
    """JSON-ready dict (tuples become lists; ``config_from_dict`` turns them back)."""
    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def config_from_dict(kind: str, values: Mapping[str, Any], path: str = "model_config") -> TokenizerConfig:
    return build(config_class(kind), dict(values), path)
