"""spark-submit entry point for the features stage.

    spark-submit jobs/features.py --config configs/nyc.yaml --lake ./lake
"""
import sys

from simcit.cli import main

if __name__ == "__main__":
    sys.exit(main(["features", *sys.argv[1:]]))
