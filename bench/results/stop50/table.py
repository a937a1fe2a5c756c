"""Stop 50: one line per soak summary (``*.summary.json`` in the folders given), with the
new-song stages that the pipelined songs handler overlaps.

    python bench/results/stop50/table.py bench/results/stop50/pipe100k ..."""
import json
import sys
from pathlib import Path

print("| run | code | interactions/s | songs/s | new song p50 / p99 ms "
      "| audio / encode / search / emit ms per song | songs' gate wait ms "
      "| cores: worker / broker / bench | longest stall (idle probe) ms | RSS GB |")
print("|---|---|---|---|---|---|---|---|---|---|")
for folder in sys.argv[1:]:
    for path in sorted(Path(folder).glob("*.summary.json"), key=lambda p: p.stat().st_mtime):
        d = json.loads(path.read_text())
        s, st = d["summary"], d["stages"]
        wait = (d.get("gate_waits") or {}).get("songs", {}).get("mean_ms", float("nan"))
        code = "base" if "/tmp/" in s.get("code", "") else "new"
        c = s["cores"]
        stages = " / ".join(f"{st[k]['mean_ms']:.1f}" for k in ("audio", "encode", "search",
                                                               "emit"))
        print(f"| {path.name.split('.')[0]} | {code} "
              f"| {s['interactions_per_s_achieved']:.1f} | {s['new_songs_per_s_achieved']:.2f} "
              f"| {s['new_song_p50_ms']:,.0f} / {s['new_song_p99_ms']:,.0f} | {stages} "
              f"| {wait:.1f} | {c['worker']:.2f} / {c['broker']:.2f} / {c['bench']:.3f} "
              f"| {s['max_loop_stall_ms']:.1f} ({s['idle_probe_max_stall_ms']:.1f}) "
              f"| {s['rss_gb']:.2f} |")
