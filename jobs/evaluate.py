"""Entry point for the evaluate stage (constrained beam search + floors -> eval_metrics).

    python jobs/evaluate.py --config configs/nyc.yaml --lake ./lake
"""
import sys

from simcit.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
