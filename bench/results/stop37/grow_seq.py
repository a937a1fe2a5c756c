"""Single-threaded: the mirror's write time across merges run in between (no merger thread)."""
import sys, time, tempfile
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[2])
from streams.stores import EdgeStore, SegmentedStore, Point
from streams.stores.segments import Segments
from streams.pipeline import USER_INDEXES
N, DIM, B = int(sys.argv[1]), 512, 300
tmp = Path(tempfile.mkdtemp())
edge = EdgeStore(tmp / "q", 0, True, "float16")
store = SegmentedStore(edge, tmp / "seg", 10**9, 16, codes="pq4", dtype="float16", check_s=10**6)
store.ensure_collection("users", DIM, USER_INDEXES)
seg = store.segments["users"]
rng = np.random.default_rng(0)
def pts(ids):
    v = rng.normal(size=(len(ids), DIM)).astype(np.float32)
    return [Point(f"00000000-0000-0000-0000-{i:012d}", v[k], {"user_id": f"u{i}", "boundary": 0.1,
            "updated_at": 1}) for k, i in enumerate(ids)]
for s in range(0, N, 5000):
    seg.upsert(pts(range(s, min(N, s + 5000))))
for s in range(0, N, 5000):
    edge.upsert("users", pts(range(s, min(N, s + 5000))))
store.merge("users", full=True)
spent = 0.0
batches = [pts(rng.choice(N, B, replace=False)) for _ in range(100)]
for cycle in range(4):
    for r in range(200):  # 60k writes, then a merge (delta), as when growing reaches N/20+
        b = batches[r % 100]
        t = time.perf_counter(); seg.upsert(b); spent += time.perf_counter() - t
    seg_before = seg.grown_n
    store.merge("users")
print(f"mirror writes {spent:.2f} s for {4*200*B} writes ({1e3*spent/(4*200*B):.4f} ms each), "
      f"merges {seg.merges}, grown {seg.grown_n}/{len(seg.grown)}")
store.close()
