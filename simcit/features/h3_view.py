"""H3 cells of every POI: the h3_r7/8/9 columns and the cells the geo graph is built from."""
from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

TABLE_RESOLUTIONS = (7, 8, 9)


def poi_cells(
    items: DataFrame,
    ring_resolution: int,
    ring_k: int,
    coarse_resolutions: list[int],
    region_resolution: int = 5,
) -> DataFrame:
    """(item_id, latitude, longitude, h3_r7, h3_r8, h3_r9, cell, ring, coarse, region) for items
    with coordinates. ``cell`` is the POI's cell at ``ring_resolution``, ``ring`` its k-ring,
    ``coarse`` its cells at the coarse resolutions, ``region`` the parent of ``cell`` at
    ``region_resolution`` (the unit the spatial kNN of the geo graph is computed in)."""
    fields = [
        T.StructField("item_id", T.StringType()),
        T.StructField("latitude", T.DoubleType()),
        T.StructField("longitude", T.DoubleType()),
        *[T.StructField(f"h3_r{r}", T.StringType()) for r in TABLE_RESOLUTIONS],
        T.StructField("cell", T.StringType()),
        T.StructField("ring", T.ArrayType(T.StringType())),
        T.StructField("coarse", T.ArrayType(T.StringType())),
        T.StructField("region", T.StringType()),
    ]

    def compute(batches):
        from geo import h3_cells

        for pdf in batches:
            lat, lon = pdf["latitude"].to_numpy(), pdf["longitude"].to_numpy()
            out = pdf[["item_id", "latitude", "longitude"]].reset_index(drop=True)
            for r in TABLE_RESOLUTIONS:
                out[f"h3_r{r}"] = h3_cells.cells(lat, lon, r)
            cell = h3_cells.cells(lat, lon, ring_resolution)
            out["cell"] = cell
            out["ring"] = h3_cells.disks(cell, ring_k)
            coarse = [h3_cells.cells(lat, lon, r) for r in coarse_resolutions]
            out["coarse"] = [list(cs) for cs in zip(*coarse)] if coarse else [[] for _ in range(len(out))]
            region = min(region_resolution, ring_resolution)
            out["region"] = [h3_cells.parent(c, region) for c in cell]
            yield out

    located = items.where(F.col("latitude").isNotNull() & F.col("longitude").isNotNull())
    return located.select("item_id", "latitude", "longitude").mapInPandas(compute, T.StructType(fields))
