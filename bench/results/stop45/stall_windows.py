"""Per-window longest event-loop stalls of soaks (each scrape's `stall_s`: the longest stall
since the previous scrape, about 2 s), within the soak's own window: a fuller picture than
the single longest stall, which one noisy moment decides.

    .venv/bin/python bench/results/stop45/stall_windows.py bench/results/stop45/ab/*/scale.json"""
import json
import sys

import numpy as np

from bench.scale import answered

for path in sys.argv[1:]:
    d = json.load(open(path))
    soak = d["soak_seconds"]
    s = np.array([x["stall_s"] * 1000 for x in answered(d["extra"]["scrapes"])
                  if x.get("stall_s") is not None and x["t"] <= soak])
    print(f"{path}: windows {len(s)}, longest {s.max():.1f} ms, p50 {np.median(s):.1f}, "
          f"p90 {np.percentile(s, 90):.1f}, windows >= 30 ms {int((s >= 30).sum())}, "
          f">= 40 ms {int((s >= 40).sum())}, >= 50 ms {int((s >= 50).sum())}; "
          f"achieved {d['interactions_per_s_achieved']:.1f}/s, p99 {d['new_song_p99_ms']:.0f} ms, "
          f"idle probe {d['idle_probe_max_stall_ms']:.1f} ms")
