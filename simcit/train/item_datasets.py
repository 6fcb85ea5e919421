"""Ray Data views of ``item_features`` for training: train / validation items (hash split) and a
bounded sample of the training items chosen by a seeded hash of the id (k-means init, RQ-KMeans fit).

Read from the table's current Delta version's Parquet files; everything streams, so no process
holds more than a block (training workers: their shard, via ``get_dataset_shard``). A small table
(``cache``) is read once into Ray's object store instead: re-reading Parquet costs every epoch a
fixed start-up (seconds) that dominates when an epoch itself takes seconds. That small table is read
by the driver with pyarrow and handed to Ray with ``from_arrow``: a Ray Data read + filter job
costs ~25 s of task start-up on 2 cores for a table of a few MB (measured on Scientific, 4k items),
longer than the whole tokenizer training. The caller decides "small" (``tokenizer.cache_mb``)."""
from __future__ import annotations

from functools import partial
from typing import Sequence

from simcit.lake import Lake
from simcit.train.view_batches import select_items, select_sample, view_column


def item_datasets(lake: Lake, views: Sequence[str], valid_fraction: float, sample_size: int,
                  table_rows: int, seed: int = 0, cache: bool = False) -> dict:
    """{"train", "valid", "sample"} Ray Datasets over the items having >= 1 of ``views``;
    ``cache``: materialize train and valid in the object store (small tables only)."""
    import ray.data

    columns = ["item_id", *[view_column(v) for v in views]]
    if cache:
        table = lake.dataset("item_features").to_table(columns=columns)
        train, valid = (ray.data.from_arrow(select_items(table, part=name, views=tuple(views),
                                                         valid_fraction=valid_fraction))
                        for name in ("train", "valid"))
    else:
        base = ray.data.read_parquet(lake.file_uris("item_features"), columns=columns)

        def part(name: str):
            return base.map_batches(partial(select_items, part=name, views=tuple(views),
                                            valid_fraction=valid_fraction),
                                    batch_format="pyarrow", batch_size=None)

        train, valid = part("train"), part("valid")
    expected_train = max(1.0, table_rows * (1.0 - valid_fraction))
    fraction = min(1.0, sample_size / expected_train)
    sample = train if fraction >= 1.0 else train.map_batches(
        partial(select_sample, fraction=fraction, seed=seed), batch_format="pyarrow", batch_size=None)
    # The hash sample has ~sample_size rows (binomial); the limit only bounds memory (at 1.25x it
    # is never reached in practice, and if it were, which rows it keeps would depend on order).
    sample = sample.limit(int(sample_size * 1.25) + 1)
    return {"train": train, "valid": valid, "sample": sample}
