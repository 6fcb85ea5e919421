"""``simcit <stage> --config CONFIG [--lake DIR] [--set key=value ...]``.

Each stage is also a ``spark-submit jobs/<stage>.py`` entry point calling :func:`main`.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys

from simcit.typed_config import ConfigError

# stage name -> module under simcit.stages exposing ``run(ctx) -> StageSummary``
STAGES: dict[str, str] = {
    "ingest": "ingest",
    "features": "features",
    "sequences": "sequences",
    "train-tokenizer": "train_tokenizer",
    "assign-ids": "assign_ids",
}
PIPELINE = ["ingest", "features", "sequences", "train-tokenizer", "assign-ids"]


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
            p.add_argument("--num-workers", type=int, help="tokenizer.num_workers (Ray Train workers)")
            p.add_argument("--strategy", choices=["ddp", "deepspeed"], help="tokenizer.strategy")
            p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    return parser


# train-tokenizer flags -> config overrides (values JSON-quoted: valid YAML, never reinterpreted)
_FLAG_KEYS = {"tokenizer": "tokenizer.kind", "num_workers": "tokenizer.num_workers",
              "strategy": "tokenizer.strategy", "address": "tokenizer.ray_address"}


def _flag_overrides(args: argparse.Namespace) -> list[str]:
    return [f"{key}={json.dumps(getattr(args, flag))}" for flag, key in _FLAG_KEYS.items()
            if getattr(args, flag, None) is not None]


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
