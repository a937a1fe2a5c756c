import sys, time, tempfile
from pathlib import Path
import numpy as np
sys.path.insert(0, "/work/main")
from streams.stores import EdgeStore
from streams.pipeline import USER_INDEXES
N, DIM, B, ROUNDS = int(sys.argv[1]), 512, 300, 40
rng = np.random.default_rng(0)
for label, idx in (("indexes", USER_INDEXES), ("none", {})):
    tmp = Path(tempfile.mkdtemp())
    edge = EdgeStore(tmp / "q", 2500, True, "float16")
    edge.ensure_collection("users", DIM, idx)
    qe = edge.qe
    def qp(ids):
        v = rng.normal(size=(len(ids), DIM)).astype(np.float32)
        return [qe.Point(f"00000000-0000-0000-0000-{i:012d}", v[k].tolist(), {"user_id": f"u{i}", "boundary": float(rng.random()),
            "updated_at": int(time.time()*1000), "model_version": "v0", "events": 3}) for k, i in enumerate(ids)]
    for s in range(0, N, 2000):
        edge._write("users", qe.UpdateOperation.upsert_points(qp(range(s, min(N, s+2000)))), 2000)
    tot = 0.0
    for r in range(ROUNDS):
        ps = qp(rng.choice(N, B, replace=False))
        a = time.perf_counter(); edge._write("users", qe.UpdateOperation.upsert_points(ps), B); tot += time.perf_counter() - a
    print(label, f"{1e3*tot/(ROUNDS*B):.4f} ms/user update", flush=True)
    edge.close() if hasattr(edge, "close") else None
