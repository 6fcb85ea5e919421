"""What every stage shares: its context, progress lines and the closing one-line summary."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from simcit.config import PipelineConfig
from simcit.lake import Lake, new_run_id


@dataclass
class StageSummary:
    stage: str
    rows_in: int = 0
    rows_out: int = 0
    rows_rejected: int = 0
    seconds: float = 0.0
    versions: dict[str, int] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)

    def line(self) -> str:
        versions = " ".join(f"{t}=v{v}" for t, v in self.versions.items())
        extra = "".join(f" {k}={v}" for k, v in self.extra.items())
        return (
            f"[{self.stage}] SUMMARY rows_in={self.rows_in:,} rows_out={self.rows_out:,} "
            f"rejected={self.rows_rejected:,} seconds={self.seconds:.1f} versions: {versions}{extra}"
        )


class StageContext:
    """Config + lake + run id; starts Spark lazily so non-Spark stages never pay for it."""

    def __init__(self, stage: str, cfg: PipelineConfig, lake_root: str):
        self.stage = stage
        self.cfg = cfg
        self.lake = Lake(lake_root, cfg.namespace)
        self.run_id = new_run_id()
        self._spark = None
        self._t0 = time.time()

    @property
    def spark(self):
        if self._spark is None:
            from simcit.spark_session import get_spark

            self.log("starting Spark")
            self._spark = get_spark(self.cfg.spark, f"simcit-{self.stage}")
        return self._spark

    def log(self, message: str) -> None:
        print(f"[{self.stage}] {time.time() - self._t0:7.1f}s  {message}", file=sys.stderr, flush=True)

    def summary(self, **kwargs) -> StageSummary:
        s = StageSummary(stage=self.stage, seconds=time.time() - self._t0, **kwargs)
        print(s.line(), flush=True)
        return s
