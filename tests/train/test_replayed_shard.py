"""ReplayedShard: the first pass streams (and is kept), later passes replay every row once."""
import pyarrow as pa

from simcit.train.replayed_shard import ReplayedShard


class FakeShard:
    def __init__(self, n: int):
        self.table = pa.table({"item_id": [f"i{i}" for i in range(n)]})
        self.passes = 0

    def iter_batches(self, batch_size, batch_format, **kwargs):
        assert batch_format == "pyarrow"
        self.passes += 1
        for start in range(0, self.table.num_rows, batch_size):
            yield self.table.slice(start, batch_size)


def _ids(batches):
    return [i for b in batches for i in b.column("item_id").to_pylist()]


def test_replays_from_memory_with_a_new_order_per_seed():
    shard = FakeShard(100)
    replayed = ReplayedShard(shard, replay=True)
    first = _ids(replayed.batches(32, shuffle_buffer=64, seed=1))
    again = _ids(replayed.batches(32, shuffle_buffer=64, seed=2))
    other = _ids(replayed.batches(32, shuffle_buffer=64, seed=3))
    assert shard.passes == 1
    assert sorted(first) == sorted(again) == sorted(other) == sorted(shard.table.column("item_id").to_pylist())
    assert again != other
    assert [b.num_rows for b in replayed.batches(32, shuffle_buffer=0)] == [32, 32, 32, 4]


def test_without_replay_every_pass_streams():
    shard = FakeShard(10)
    plain = ReplayedShard(shard, replay=False)
    assert _ids(plain.batches(4)) == _ids(plain.batches(4))
    assert shard.passes == 2


def test_an_interrupted_first_pass_is_not_kept():
    shard = FakeShard(10)
    replayed = ReplayedShard(shard, replay=True)
    next(iter(replayed.batches(4)))
    assert _ids(replayed.batches(4)) == shard.table.column("item_id").to_pylist()
    assert shard.passes == 2
