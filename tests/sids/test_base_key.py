"""The packed base-code key: exact round trip, order of the code tuple, Spark = numpy."""
import numpy as np
import pytest

from simcit.sids.base_key import code_columns, key_bits, key_of_codes, pack, unpack


def test_bits_per_level_and_the_62_bit_limit():
    assert key_bits(3, 256) == 8 and key_bits(3, 257) == 9 and key_bits(4, 2) == 1 and key_bits(1, 1) == 1
    assert key_bits(2, 2**31) == 31
    with pytest.raises(ValueError, match="do not fit"):
        key_bits(4, 2**16 + 1)


def test_pack_round_trips_and_orders_like_the_code_tuple():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 300, size=(500, 3))
    bits = key_bits(3, 300)
    keys = pack(codes, bits)
    assert np.array_equal(unpack(keys, 3, bits), codes)
    assert np.array_equal(np.argsort(keys, kind="stable"), np.lexsort(codes.T[::-1]))
    assert len(np.unique(keys)) == len(np.unique(codes, axis=0))
    with pytest.raises(ValueError, match="codes must lie"):
        pack(np.array([[0, 512]]), bits)


@pytest.mark.spark
def test_spark_expressions_match_numpy(spark):
    from pyspark.sql import functions as F

    rng = np.random.default_rng(1)
    codes = rng.integers(0, 1024, size=(200, 4))
    bits = key_bits(4, 1024)
    rows = [(c.tolist() + [7], int(k)) for c, k in zip(codes, pack(codes, bits))]
    df = spark.createDataFrame(rows, "codes array<int>, key long")
    out = df.select(key_of_codes(F.col("codes"), 4, bits).alias("from_codes"),
                    F.array(*code_columns(F.col("key"), 4, bits)).alias("from_key"), "key").collect()
    assert all(r["from_codes"] == r["key"] for r in out)
    assert [r["from_key"] for r in out] == codes.tolist()
