"""Entry point for the train-tokenizer stage (a Ray Train job, not a Spark one).

    python jobs/train_tokenizer.py --config configs/nyc.yaml --lake ./lake --num-workers 2
    ray job submit --address http://head:8265 -- python jobs/train_tokenizer.py --config ... --address auto
"""
import sys

from simcit.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-tokenizer", *sys.argv[1:]]))
