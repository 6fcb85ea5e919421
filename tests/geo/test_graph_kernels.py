"""The numpy kernels the Spark feature job runs in its Python workers, against brute force."""
from collections import Counter

import h3
import numpy as np
import pandas as pd

from geo.distance import haversine_m
from simcit.features.geo_graph import ring_knn
from simcit.features.interaction_pairs import sequence_pair_counts
from tests.conftest import DATA


def _brute_force_knn(lat, lon, cells, nid, hkey, k_ring, m, cap):
    """All pairs; candidate iff grid distance of the cells <= k_ring and among its cell's first
    ``cap`` by (hkey, nid); nearest ``m`` by (distance, nid)."""
    n = len(lat)
    admissible = np.zeros(n, dtype=bool)
    for c in set(cells):
        members = [i for i in range(n) if cells[i] == c]
        members.sort(key=lambda i: (hkey[i], nid[i]))
        admissible[members[:cap]] = True
    out = set()
    for i in range(n):
        d = haversine_m(lat[i], lon[i], lat, lon)
        ring = set(h3.grid_disk(cells[i], k_ring))
        cand = [j for j in range(n) if j != i and admissible[j] and cells[j] in ring]
        cand.sort(key=lambda j: (d[j], nid[j]))
        out |= {(i, j, d[j]) for j in cand[:m]}
    return out


def _nyc_block(n=700, seed=0):
    pois = pd.read_csv(DATA / "foursquare_nyc" / "pois.csv.gz")
    # A dense Manhattan block, so rings hold more candidates than max_neighbors.
    box = pois[(pois.latitude.between(40.735, 40.765)) & (pois.longitude.between(-74.0, -73.97))]
    box = box.sample(n=min(n, len(box)), random_state=seed)
    return box.latitude.to_numpy(), box.longitude.to_numpy()


def _run_ring_knn(lat, lon, nid, hkey, res, k_ring, m, cap, chunk):
    cells = np.array([h3.latlng_to_cell(a, b, res) for a, b in zip(lat, lon)])
    cell_int = np.array([h3.str_to_int(c) for c in cells], dtype=np.int64)
    rings = [[h3.str_to_int(x) for x in h3.grid_disk(c, k_ring)] for c in cells]
    s, d, dist = ring_knn(
        nid, lat, lon, cell_int, hkey, np.arange(len(lat)), np.array([len(r) for r in rings]),
        np.concatenate([np.array(r, dtype=np.int64) for r in rings]), m, cap, chunk_pairs=chunk,
    )
    return cells, {(int(a), int(b), float(c)) for a, b, c in zip(s, d, dist)}


def test_ring_knn_equals_brute_force_on_real_nyc():
    lat, lon = _nyc_block()
    rng = np.random.default_rng(1)
    nid = rng.permutation(len(lat)).astype(np.int64) * 3 + 5  # ids unrelated to row order
    hkey = rng.integers(-(2**62), 2**62, len(lat))
    for cap, chunk in [(128, 1 << 20), (3, 50)]:  # no cap in effect / cap biting, tiny chunks
        cells, got = _run_ring_knn(lat, lon, nid, hkey, 9, 1, 6, cap, chunk)
        want = _brute_force_knn(lat, lon, cells, nid, hkey, 1, 6, cap)
        assert {(a, b) for a, b, _ in got} == {(a, b) for a, b, _ in want}
        dist = {(a, b): c for a, b, c in want}
        assert all(abs(c - dist[(a, b)]) < 1e-6 for a, b, c in got)
    assert Counter(a for a, _, _ in got).most_common(1)[0][1] == 6


def test_ring_knn_breaks_distance_ties_by_id():
    # Five POIs at one coordinate, plus a sixth 50 m away: the 2 nearest are the smallest ids.
    lat = np.array([40.75] * 5 + [40.75045])
    lon = np.array([-73.98] * 6)
    nid = np.array([9, 4, 7, 1, 3, 2], dtype=np.int64)
    cells, got = _run_ring_knn(lat, lon, nid, np.zeros(6, np.int64), 9, 1, 2, 128, 1 << 20)
    chosen = {int(nid[a]): sorted(int(nid[b]) for x, b, _ in got if x == a) for a in range(6)}
    assert chosen[9] == [1, 3] and chosen[1] == [3, 4] and chosen[2] == [1, 3]


def _naive_pairs(users, window, max_gap_s):
    cf, mob = Counter(), Counter()
    for seq in users:
        for i, (a, ta) in enumerate(seq):
            for o in range(1, window + 1):
                if i + o < len(seq) and seq[i + o][0] != a:
                    cf[tuple(sorted((a, seq[i + o][0])))] += 1
            if max_gap_s is not None and i + 1 < len(seq):
                b, tb = seq[i + 1]
                if b != a and tb - ta <= max_gap_s:
                    mob[tuple(sorted((a, b)))] += 1
    return cf, mob


def test_sequence_pair_counts_equal_naive_loops():
    rng = np.random.default_rng(3)
    users = []
    for _ in range(40):
        n = int(rng.integers(0, 30))
        items = rng.integers(0, 12, n)
        ts = np.cumsum(rng.integers(0, 5000, n)).astype(float)
        users.append(list(zip(items.tolist(), ts.tolist())))
    lengths = np.array([len(u) for u in users])
    nid = np.array([a for u in users for a, _ in u], dtype=np.int64)
    ts = np.array([t for u in users for _, t in u])
    for window, gap in [(3, 3600.0), (1, None), (0, 7200.0)]:
        src, dst, cf, mob = sequence_pair_counts(lengths, nid, ts, window, gap)
        assert (src < dst).all()
        want_cf, want_mob = _naive_pairs(users, window, gap)
        got_cf = {(int(a), int(b)): c for a, b, c in zip(src, dst, cf) if c}
        got_mob = {(int(a), int(b)): c for a, b, c in zip(src, dst, mob) if c}
        assert got_cf == dict(want_cf) and got_mob == dict(want_mob)


def test_sequence_pair_counts_handle_large_ids_and_empty_input():
    big = np.array([2**40, 5, 2**40 + 1], dtype=np.int64)
    src, dst, cf, mob = sequence_pair_counts(np.array([3]), big, np.zeros(3), 2, 10.0)
    assert sorted(zip(src.tolist(), dst.tolist(), cf.tolist(), mob.tolist())) == [
        (5, 2**40, 1.0, 1.0), (5, 2**40 + 1, 1.0, 1.0), (2**40, 2**40 + 1, 1.0, 0.0)
    ]
    assert all(len(x) == 0 for x in sequence_pair_counts(np.array([], dtype=int), np.array([]), np.array([]), 3, 1.0))
