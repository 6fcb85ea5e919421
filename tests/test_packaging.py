"""The repository's own deliverables: Dockerfile lint, CLI entry points, spark-submit jobs."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from simcit.cli import STAGES, build_parser, main
from tests.conftest import NYC_CONFIG, REPO, write_config


def test_dockerfile_is_hadolint_clean():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    proc = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_stage_has_a_spark_submit_job():
    for stage, module in STAGES.items():
        job = REPO / "jobs" / f"{module}.py"
        assert job.exists(), f"jobs/{module}.py missing for stage {stage}"
        assert f'"{stage}"' in job.read_text()


def test_cli_reports_config_errors_cleanly(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(NYC_CONFIG.read_text().replace("max_history:", "max_histroy:"))
    assert main(["sequences", "--config", str(bad), "--lake", str(tmp_path)]) == 2
    assert "unknown key(s) ['max_histroy']" in capsys.readouterr().err
    args = build_parser().parse_args(["ingest", "--config", "c.yaml", "--set", "a.b=1"])
    assert args.lake == "./lake" and args.overrides == ["a.b=1"]


@pytest.mark.spark
def test_spark_submit_runs_a_job(tmp_path, nyc_slice):
    cfg = write_config(tmp_path, NYC_CONFIG, nyc_slice / "pois.csv.gz", nyc_slice / "checkins.csv.gz")
    lake = tmp_path / "lake"
    submit = Path(sys.executable).parent / "spark-submit"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    proc = subprocess.run(
        [str(submit), "--master", "local[1]", str(REPO / "jobs" / "ingest.py"), "--config", str(cfg), "--lake", str(lake)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[ingest] SUMMARY" in proc.stdout
    assert pl.read_delta(str(lake / "nyc" / "items")).height > 0
