"""geo view: the POI graph (spatial rings + mobility + H3 hierarchy) and its spectral embedding.

Nodes are POIs with coordinates plus coarse H3 cells. Edges, all built with Spark joins:
  * spatial: POI -> POIs whose cell lies in its k-ring at ``ring_resolution`` (an equi-join on
    cell id after exploding the ring; at most ``max_cell_candidates`` per cell, chosen by a hash
    of the id), the ``max_neighbors`` nearest kept, weight
    1 / (1 + d / edge_length): dense downtown cells cannot blow the edge count up;
  * mobility: consecutive check-ins of a user within ``mobility_max_gap_hours``, from the
    **training part only**, weight log(1 + count);
  * hierarchy: POI <-> its cells at ``cell_resolutions`` (e.g. res 6/7 districts), so isolated
    POIs are still placed by region.
The embedding is the top eigenspace of the lazy random-walk matrix (I + D^-1/2 A D^-1/2) / 2.
"""
from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from geo.distance import EARTH_RADIUS_M
from geo.h3_cells import edge_length_m
from simcit.config import GeoViewConfig
from simcit.features.distributed_eigen import top_eigen_embedding

CELL_PREFIX = "h3:"


def haversine_m(lat1: Column, lon1: Column, lat2: Column, lon2: Column) -> Column:
    """Native Spark haversine (same formula as :func:`geo.distance.haversine_m`)."""
    p1, p2 = F.radians(lat1), F.radians(lat2)
    a = F.pow(F.sin((p2 - p1) / 2), 2) + F.cos(p1) * F.cos(p2) * F.pow(F.sin(F.radians(lon2 - lon1) / 2), 2)
    return 2 * EARTH_RADIUS_M * F.asin(F.sqrt(F.least(F.lit(1.0), a)))


def symmetric(edges: DataFrame, combine=F.max) -> DataFrame:
    swapped = edges.select(F.col("dst").alias("src"), F.col("src").alias("dst"), "w")
    return edges.unionByName(swapped).groupBy("src", "dst").agg(combine("w").alias("w"))


def spatial_edges(cells: DataFrame, cfg: GeoViewConfig) -> DataFrame:
    scale = edge_length_m(cfg.ring_resolution)
    left = cells.select(
        F.col("item_id").alias("src"), F.col("latitude").alias("lat1"), F.col("longitude").alias("lon1"),
        F.explode("ring").alias("cell"),
    )
    right = cells.select(
        F.col("item_id").alias("dst"), F.col("latitude").alias("lat2"), F.col("longitude").alias("lon2"), "cell"
    )
    # Bound the candidates a single (pathologically dense) cell can contribute.
    per_cell = Window.partitionBy("cell").orderBy(F.xxhash64("dst"), "dst")
    right = right.withColumn("slot", F.row_number().over(per_cell)).where(F.col("slot") <= cfg.max_cell_candidates)
    pairs = left.join(right, on="cell").where(F.col("src") != F.col("dst"))
    pairs = pairs.withColumn("d", haversine_m(F.col("lat1"), F.col("lon1"), F.col("lat2"), F.col("lon2")))
    nearest = Window.partitionBy("src").orderBy("d", "dst")
    kept = pairs.withColumn("rank", F.row_number().over(nearest)).where(F.col("rank") <= cfg.max_neighbors)
    edges = kept.select("src", "dst", (cfg.spatial_weight / (1.0 + F.col("d") / scale)).alias("w"))
    return symmetric(edges, F.max)


def mobility_edges(train: DataFrame, pois: DataFrame, cfg: GeoViewConfig) -> DataFrame:
    order = Window.partitionBy("user_id").orderBy("ts", "seq_no", "item_id")
    steps = train.select(
        "user_id",
        F.lag("item_id").over(order).alias("src"),
        F.col("item_id").alias("dst"),
        (F.col("ts").cast("double") - F.lag("ts").over(order).cast("double")).alias("gap_s"),
    )
    moves = steps.where(
        F.col("src").isNotNull()
        & (F.col("src") != F.col("dst"))
        & (F.col("gap_s") <= cfg.mobility_max_gap_hours * 3600.0)
    )
    located = pois.select(F.col("item_id").alias("id"))
    moves = moves.join(located.withColumnRenamed("id", "src"), "src").join(located.withColumnRenamed("id", "dst"), "dst")
    counts = moves.groupBy("src", "dst").agg(F.count(F.lit(1)).cast("double").alias("w"))
    counts = symmetric(counts, F.sum)
    return counts.select("src", "dst", (cfg.mobility_weight * F.log1p(F.col("w"))).alias("w"))


def hierarchy_edges(cells: DataFrame, cfg: GeoViewConfig) -> DataFrame:
    edges = cells.select(
        F.col("item_id").alias("src"),
        F.explode(F.transform("coarse", lambda c: F.concat(F.lit(CELL_PREFIX), c))).alias("dst"),
        F.lit(cfg.cell_weight).alias("w"),
    )
    return symmetric(edges, F.max)


def lazy_walk_entries(adjacency: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Entries of M = (I + D^-1/2 A D^-1/2) / 2 and its node list."""
    degree = adjacency.groupBy(F.col("src").alias("id")).agg(F.sum("w").alias("deg"))
    deg_src = degree.select(F.col("id").alias("src"), F.col("deg").alias("d_src"))
    deg_dst = degree.select(F.col("id").alias("dst"), F.col("deg").alias("d_dst"))
    off = (
        adjacency.join(deg_src, "src")
        .join(deg_dst, "dst")
        .select("src", "dst", (0.5 * F.col("w") / F.sqrt(F.col("d_src") * F.col("d_dst"))).alias("w"))
    )
    diag = degree.select(F.col("id").alias("src"), F.col("id").alias("dst"), F.lit(0.5).alias("w"))
    return off.unionByName(diag), degree.select("id")


def geo_embeddings(
    cells: DataFrame, train: DataFrame, cfg: GeoViewConfig, log: Callable[[str], None]
) -> DataFrame:
    """(item_id, geo_emb) for every POI with coordinates."""
    parts = [spatial_edges(cells, cfg), hierarchy_edges(cells, cfg)]
    if cfg.mobility_weight > 0:
        parts.append(mobility_edges(train, cells, cfg))
    adjacency = parts[0]
    for p in parts[1:]:
        adjacency = adjacency.unionByName(p)
    adjacency = adjacency.groupBy("src", "dst").agg(F.sum("w").alias("w"))
    entries, nodes = lazy_walk_entries(adjacency)
    emb = top_eigen_embedding(entries, nodes, cfg.dim, cfg.oversample, cfg.power_iters, cfg.seed, log)
    return emb.where(~F.col("id").startswith(CELL_PREFIX)).select(
        F.col("id").alias("item_id"), F.col("emb").alias("geo_emb")
    )
