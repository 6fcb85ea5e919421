"""spark-submit entry point for the ingest stage.

    spark-submit jobs/ingest.py --config configs/nyc.yaml --lake ./lake
"""
import sys

from simcit.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
