"""Same-run A/B at 1M: stop 32's search path vs the listed rows, vs listed rows + faiss fp16 decode/dot."""
import shutil, sys, tempfile, time
from pathlib import Path
import numpy as np
sys.path.insert(0, "/work/main")
from bench.segments import Live, load, churn, mixture, queries, merge_with_probe
from bench.search import exact
from streams.stores.segmented import SegmentedStore
from streams.stores.edge import EdgeStore
import streams.stores.segments as S

n = int(sys.argv[1]); dim = int(sys.argv[2])
root = Path(tempfile.mkdtemp(prefix="ab-"))
rng = np.random.default_rng(3)
t = time.perf_counter()
x, label = mixture(n + n // 25, dim)
live = Live(x, label)
store = SegmentedStore(EdgeStore(root / "q"), root / "seg", merge_rows=0, codes="pq4", dtype=sys.argv[3])
store.ensure_collection("songs", dim, {"genre": "integer"})
load(store, live, np.arange(n)); print("loaded", time.perf_counter() - t, flush=True)
merge_with_probe(store); churn(store, live, np.arange(n, len(x)), rng)
seg = store.segments["songs"]
print("growing", seg.growing, "grown_n", seg.grown_n, "lists", seg.sealed.lists, flush=True)
qs = queries(live.x[live.alive], 200)
_HALF = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
def lut(rows):
    return rows if rows.dtype == np.float32 else np.take(_HALF, rows.view(np.uint16))
def einsum_dot(rows, q):
    return np.einsum("ij,j->i", rows, q)
new_probed, new_rows, new_f32, new_dot, new_score = seg._probed_rows, seg._rows, S.as_float32, S._dot, seg._score
def old_probed(q, nprobe, coarse=None):
    sealed = seg.sealed
    if not seg.list_growing or nprobe * S.LISTED_BELOW >= sealed.lists:
        return None
    scanned = np.zeros(sealed.lists + 1, dtype=bool); scanned[0] = True
    lists = (sealed.coarse(q, nprobe) if coarse is None else coarse)[1][0]
    scanned[lists[lists >= 0] + 1] = True
    return np.flatnonzero(scanned[seg.listed.list_of[:seg.grown_n]])
def old_rows(slots):
    return lut(seg.vectors[slots])
def use(name):
    allnew = name == "new"
    seg._probed_rows = old_probed if name == "stop32" else new_probed
    seg._rows = new_rows if allnew else old_rows
    S.as_float32 = new_f32 if allnew else lut
    S._dot = new_dot if allnew else einsum_dot
    seg._score = new_score if allnew else (lambda slots, q: S._dot(seg._rows(slots), q))
variants = ["stop32", "listed", "new"]
res = {}
for name in variants:
    use(name); res[name] = [[h for h, _ in seg.search(q, 10)] for q in qs]
print("same ids:", res["stop32"] == res["listed"] == res["new"], flush=True)
truth = [exact(live.x[live.alive], q, 10) for q in qs] if False else None
times = {k: [] for k in variants}
for rnd in range(8):
    for name in variants:
        use(name)
        for q in qs:
            t0 = time.perf_counter(); seg.search(q, 10); times[name].append(time.perf_counter() - t0)
for name in variants:
    a = np.array(times[name]) * 1e3
    print(f"{name:8s} search p50 {np.median(a):.3f} p99 {np.percentile(a, 99):.3f} ms", flush=True)
store.close(); shutil.rmtree(root, ignore_errors=True)
