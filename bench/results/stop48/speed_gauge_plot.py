"""Stop 48: every 1M soak at 500 interactions/s + 10 new songs/s (stops 47-48), each 20 s
window as one point: the bench's own cores (its work is fixed, so more cores = a slower
machine at that moment) against the worker's cores and against the new songs' consumer lag.
Writes ``speed_gauge.png`` beside this file."""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

here = Path(__file__).parent
runs = {p.parent.name: p for p in sorted((here / "soak").glob("*/scale.json"))}
runs["stop47 rate500_songs10"] = here.parent / "stop47/soak/rate500_songs10/scale.json"
fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
for name, path in runs.items():
    d = json.loads(path.read_text())
    if d.get("new_songs_per_s_offered") != 10.0:
        continue
    s = [r for r in d["extra"]["scrapes"] if r.get("cpu_s")]
    xs, ws, lags = [], [], []
    for r0, r1 in zip(s[::10], s[10::10]):
        dt = r1["t"] - r0["t"]
        if dt <= 0 or r1["songs_indexed"] - r0["songs_indexed"] < 5 * dt:
            continue  # the soak's end: nothing offered
        xs.append((r1["cpu_s"]["bench"] - r0["cpu_s"]["bench"]) / dt)
        ws.append((r1["cpu_s"]["worker"] - r0["cpu_s"]["worker"]) / dt)
        lags.append(sum(r1["lag"].values()))
    label = f"{name} (p99 {d['new_song_p99_ms'] / 1e3:.2f} s)"
    a.scatter(xs, ws, s=14, label=label)
    b.scatter(xs, lags, s=14, label=label)
a.set_xlabel("bench cores (fixed work: higher = slower machine)")
a.set_ylabel("worker cores")
b.set_xlabel("bench cores")
b.set_ylabel("consumer lag, all topics (records)")
b.set_yscale("symlog", linthresh=100)
a.legend(fontsize=7)
fig.suptitle("1M songs + 1M listeners, 500 interactions/s + 10 new songs/s: 20 s windows")
fig.tight_layout()
fig.savefig(here / "speed_gauge.png", dpi=110)
print("wrote", here / "speed_gauge.png")
