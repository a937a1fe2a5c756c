"""Stop 49: one line per soak summary (``*.summary.json`` in the folders given).

    python bench/results/stop49/table.py bench/results/stop49/ab100k ..."""
import json
import sys
from pathlib import Path

print("| run | code | settings | interactions/s | songs/s | new song p50 / p99 ms | emit ms/song "
      "| decodes/s | cores: worker / broker / bench | longest stall (idle probe) ms | RSS GB "
      "| 5,000/s tail: interactions/s, songs/s |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for folder in sys.argv[1:]:
    for path in sorted(Path(folder).glob("*.summary.json"), key=lambda p: p.stat().st_mtime):
        d = json.loads(path.read_text())
        s, st, tail = d["summary"], d["stages"], d.get("at_issue_rate") or {}
        code = "base" if "/tmp/" in s.get("code", "") else "new"
        c = s["cores"]
        print(f"| {path.name.split('.')[0]} | {code} | {s.get('settings') or ''} "
              f"| {s['interactions_per_s_achieved']:.1f} | {s['new_songs_per_s_achieved']:.2f} "
              f"| {s['new_song_p50_ms']:,.0f} / {s['new_song_p99_ms']:,.0f} "
              f"| {st['emit']['mean_ms']:.1f} | {st['decode']['calls_per_s']:,.0f} "
              f"| {c['worker']:.2f} / {c['broker']:.2f} / {c['bench']:.3f} "
              f"| {s['max_loop_stall_ms']:.1f} ({s['idle_probe_max_stall_ms']:.1f}) "
              f"| {s['rss_gb']:.2f} | {tail.get('interactions_per_s_achieved', 0):,.0f}, "
              f"{tail.get('new_songs_per_s_achieved', 0):.2f} |")
