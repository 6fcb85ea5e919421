"""spark-submit entry point for the sequences stage.

    spark-submit jobs/sequences.py --config configs/nyc.yaml --lake ./lake
"""
import sys

from simcit.cli import main

if __name__ == "__main__":
    sys.exit(main(["sequences", *sys.argv[1:]]))
