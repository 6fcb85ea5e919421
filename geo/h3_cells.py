"""H3 cells and grid neighbourhoods for arrays of coordinates (h3 4.x)."""
from __future__ import annotations

import h3
import numpy as np


def cells(lat: np.ndarray, lon: np.ndarray, resolution: int) -> np.ndarray:
    """H3 cell id (hex string) of each point; None where a coordinate is missing."""
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    out = np.empty(len(lat), dtype=object)
    for i, (a, b) in enumerate(zip(lat, lon)):
        out[i] = None if np.isnan(a) or np.isnan(b) else h3.latlng_to_cell(a, b, resolution)
    return out


def disk(cell: str, k: int) -> list[str]:
    """The cell and every cell within grid distance ``k`` (its k-ring neighbourhood)."""
    return list(h3.grid_disk(cell, k))


def disks(cell_ids: np.ndarray, k: int) -> list[list[str] | None]:
    return [None if c is None else disk(c, k) for c in cell_ids]


def parent(cell: str, resolution: int) -> str:
    return h3.cell_to_parent(cell, resolution)


def edge_length_m(resolution: int) -> float:
    """Average hexagon edge length in metres: the natural distance scale of a resolution."""
    return float(h3.average_hexagon_edge_length(resolution, "m"))
