import h3
import numpy as np
import pandas as pd

from geo import h3_cells
from geo.distance import haversine_m
from geo.graph_weights import consecutive_pairs, mobility_weight, spatial_weight
from tests.conftest import DATA


def test_cells_match_h3_and_skip_missing_coordinates():
    lat = np.array([40.733596, np.nan, 40.756377])
    lon = np.array([-74.003139, -73.9, -73.967653])
    cells = h3_cells.cells(lat, lon, 9)
    assert cells[0] == h3.latlng_to_cell(40.733596, -74.003139, 9)
    assert cells[1] is None
    assert h3.get_resolution(cells[2]) == 9
    assert h3_cells.parent(cells[0], 7) == h3.latlng_to_cell(40.733596, -74.003139, 7)


def test_disk_is_the_k_ring():
    c = h3.latlng_to_cell(40.75, -73.98, 9)
    ring1 = h3_cells.disk(c, 1)
    assert len(ring1) == 7 and c in ring1
    assert all(h3.grid_distance(c, x) <= 1 for x in ring1)
    assert len(h3_cells.disk(c, 2)) == 19


def test_haversine_known_distance():
    # Times Square -> Empire State Building is about 1.0 km.
    d = haversine_m(40.7580, -73.9855, 40.7484, -73.9857)
    assert 1000 < d < 1150
    assert haversine_m(40.0, -74.0, 40.0, -74.0) == 0


def test_weights_decay_and_dampen():
    w = spatial_weight(np.array([0.0, 200.0, 2000.0]), 200.0)
    assert np.allclose(w, [1.0, 0.5, 1 / 11])
    assert mobility_weight(0) == 0 and mobility_weight(100) < 10 * mobility_weight(1)


def test_consecutive_pairs_respect_user_gap_and_self_moves():
    user = np.array(["u1", "u1", "u1", "u1", "u2", "u2"])
    item = np.array(["a", "b", "b", "c", "c", "d"])
    ts = np.array([0, 60, 120, 10**6, 0, 30])
    src, dst = consecutive_pairs(user, item, ts, max_gap_s=3600)
    # a->b kept; b->b self move dropped; b->c gap too long; u1->u2 boundary dropped; c->d kept.
    assert list(zip(src, dst)) == [("a", "b"), ("c", "d")]


def test_real_nyc_cells_cover_all_pois():
    pois = pd.read_csv(DATA / "foursquare_nyc" / "pois.csv.gz")
    cells = h3_cells.cells(pois.latitude.to_numpy(), pois.longitude.to_numpy(), 7)
    assert all(c is not None for c in cells)
    assert 20 < len(set(cells)) < len(pois)  # NYC spans many res-7 cells, POIs share them
