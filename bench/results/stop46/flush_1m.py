"""Stop 46: the flush bench (bench/flush.py) at the soak's size, 1M points, for the point bound.

The 1M stall trace (trace/) found Qdrant Edge's flush holding the GIL in 33 of 67 stalls of
30 ms or more. This replays the store's write load at 1M points (2,000 points/s, about what
the 1,000/s soak writes: 2.1 flushes/s of 1,000 points) for each bound, in one run, with the
idle probe per row. Usage: python flush_1m.py OUT_DIR
"""
import json
import sys
from pathlib import Path

from bench import flush

out = Path(sys.argv[1])
rep = flush.run("full", n=1_000_000, rate=2_000.0, seconds=40.0,
                configs=((1.0, 1_000, True), (1.0, 500, True), (1.0, 250, True),
                         (1.0, 1_000, True)))
rep.save(out)
print(json.dumps(rep.rows, indent=1))
