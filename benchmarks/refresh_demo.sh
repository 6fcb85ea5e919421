#!/usr/bin/env bash
# Refresh stability and determinism of assign-ids on the real NYC data (after `make demo`):
# SIDs for NYC minus 103 POIs, the same run again, then a refresh with the 103 POIs back.
# Writes semantic_ids__refresh_demo in ./lake/nyc and restores item_features as a new version.
set -e
L=./lake; C=configs/nyc.yaml; S="--set assign_ids.table_tag=refresh_demo"
.venv/bin/python - <<'PY'
import polars as pl
from simcit.lake import Lake
lake = Lake("./lake", "nyc")
full = lake.dataset("item_features").to_table()
ids = sorted(full.column("item_id").to_pylist())
held = set(ids[::50])                                # hold back every 50th POI (103 POIs)
import pyarrow.compute as pc
lake.write_table("item_features", full.filter(pc.invert(pc.is_in(full.column("item_id"), value_set=__import__("pyarrow").array(list(held))))))
print("item_features without", len(held), "POIs:", lake.version("item_features"))
PY
.venv/bin/simcit assign-ids --config $C --lake $L $S 2>/dev/null | grep SUMMARY
.venv/bin/simcit assign-ids --config $C --lake $L $S 2>/dev/null | grep SUMMARY
.venv/bin/python - <<'PY'
from simcit.lake import Lake
lake = Lake("./lake", "nyc")
lake.write_table("item_features", lake.dataset("item_features", version=0).to_table())  # the held-back POIs return
PY
.venv/bin/simcit assign-ids --config $C --lake $L $S 2>/dev/null | grep SUMMARY
.venv/bin/python - <<'PY'
import polars as pl
p = "./lake/nyc/semantic_ids__refresh_demo"
v0, v1, v2 = (pl.read_delta(p, version=v).sort("item_id") for v in (0, 1, 2))
print("rerun identical (v0 == v1):", v0.equals(v1))
kept = v2.join(v0.select("item_id"), on="item_id", how="semi")
print("existing SIDs unchanged after refresh:", kept.equals(v0), f"({v0.height} items)")
new = v2.join(v0.select("item_id"), on="item_id", how="anti")
print("new items:", new.height, "| new SIDs already in use before:", new["sid"].is_in(v0["sid"].implode()).sum(),
      "| all SIDs unique:", v2["sid"].n_unique() == v2.height)
PY
