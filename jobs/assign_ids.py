"""spark-submit entry point for the assign-ids stage.

    spark-submit jobs/assign_ids.py --config configs/nyc.yaml --lake ./lake
"""
import sys

from simcit.cli import main

if __name__ == "__main__":
    sys.exit(main(["assign-ids", *sys.argv[1:]]))
