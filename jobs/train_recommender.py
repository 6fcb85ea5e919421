"""Entry point for the train-recommender stage (a Ray Train job, not a Spark one).

    python jobs/train_recommender.py --config configs/nyc.yaml --lake ./lake --num-workers 2
    python jobs/train_recommender.py --config configs/nyc.yaml --lake ./lake --base-model /models/qwen2-0.5b
    ray job submit --address http://head:8265 -- python jobs/train_recommender.py --config ... --address auto
"""
import sys

from simcit.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-recommender", *sys.argv[1:]]))
