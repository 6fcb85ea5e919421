"""``simcit <stage> --config CONFIG [--lake DIR] [--set key=value ...]``.

Each stage is also a ``spark-submit jobs/<stage>.py`` entry point calling :func:`main`.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from simcit.typed_config import ConfigError

# stage name -> module under simcit.stages exposing ``run(ctx) -> StageSummary``
STAGES: dict[str, str] = {
    "ingest": "ingest",
    "features": "features",
    "sequences": "sequences",
    "train-tokenizer": "train_tokenizer",
    "assign-ids": "assign_ids",
    "train-recommender": "train_recommender",
    "evaluate": "evaluate",
}
PIPELINE = ["ingest", "features", "sequences", "train-tokenizer", "assign-ids", "train-recommender", "evaluate"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simcit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name in [*STAGES, "pipeline"]:
        p = sub.add_parser(name, help=f"run the {name} stage" if name != "pipeline" else "run all stages in order")
        p.add_argument("--config", required=True, help="pipeline YAML, e.g. configs/nyc.yaml")
        p.add_argument("--lake", default="./lake", help="lake root directory (default ./lake)")
        p.add_argument(
            "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
            help="override a config key, e.g. --set features.geo.dim=32 (repeatable)",
        )
        if name == "train-tokenizer":
            p.add_argument("--tokenizer", choices=["simcit", "rqvae", "rqkmeans"], help="tokenizer.kind")
        if name in ("train-tokenizer", "train-recommender"):
            section = "tokenizer" if name == "train-tokenizer" else "recommender"
            p.add_argument("--num-workers", type=int, help=f"{section}.num_workers (Ray Train workers)")
            p.add_argument("--strategy", choices=["ddp", "deepspeed"], help=f"{section}.strategy")
            p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
        if name == "train-recommender":
            p.add_argument("--base-model", help="local directory of a pretrained causal LM to fine-tune "
                                                "(SID tokens are added to its vocabulary)")
        if name in ("train-recommender", "evaluate"):
            p.add_argument("--sid-table", help="semantic_ids table to use, e.g. semantic_ids__rqvae "
                                               "(default: the one assign-ids writes)")
    return parser


# stage flags -> config overrides (values JSON-quoted: valid YAML, never reinterpreted)
_FLAG_KEYS = {
    "train-tokenizer": {"tokenizer": "tokenizer.kind", "num_workers": "tokenizer.num_workers",
                        "strategy": "tokenizer.strategy", "address": "tokenizer.ray_address"},
    "train-recommender": {"num_workers": "recommender.num_workers", "strategy": "recommender.strategy",
                          "address": "recommender.ray_address", "base_model": "recommender.base_model",
                          "sid_table": "recommender.sid_table"},
    "evaluate": {"sid_table": "recommender.sid_table"},
}


def _flag_overrides(args: argparse.Namespace) -> list[str]:
    keys = _FLAG_KEYS.get(args.stage, {})
    out = []
    for flag, key in keys.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        if flag == "base_model":
            value = os.path.abspath(value)  # a path on the command line is relative to the cwd
        out.append(f"{key}={json.dumps(value)}")
    return out


def run_stage(stage: str, config: str, lake: str = "./lake", overrides: list[str] | None = None):
    from simcit.config import load_config
    from simcit.stages.runtime import StageContext

    cfg = load_config(config, overrides)
    module = importlib.import_module(f"simcit.stages.{STAGES[stage]}")
    return module.run(StageContext(stage, cfg, lake))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stages = PIPELINE if args.stage == "pipeline" else [args.stage]
    try:
        for stage in stages:
            run_stage(stage, args.config, args.lake, args.overrides + _flag_overrides(args))
    except ConfigError as exc:
        print(f"simcit: configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
