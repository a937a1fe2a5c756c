"""Stop 48: one table row per soak of ``bench/results/stop48/soak`` (markdown on stdout).

The bench's own CPU is the machine's speed gauge: its work (offering the events, reading the
candidates, scraping) is the same in every run at a given rate, so when it costs more the
machine was slower (a shared VM), and the worker pays the same."""
import json, sys
from pathlib import Path

root = Path(__file__).parent / "soak"
labels = sys.argv[1:] or sorted(p.name for p in root.iterdir() if p.is_dir())
print("| run | interactions/s | songs/s | new song p50 / p99 | songs' gate wait, mean | "
      "listener batches' gate wait, mean (interactions / engagement / refresh) | "
      "longest stall (idle probe) | cores: worker / broker / bench | RSS |")
print("|---|---|---|---|---|---|---|---|---|")
for label in labels:
    d = json.loads((root / label / "scale.json").read_text())
    g = d.get("gate_waits") or {}
    ms = lambda k: f"{g[k]['mean_ms']:.0f}" if k in g else "-"
    c = d["cores"]
    print(f"| {label} | {d['interactions_per_s_achieved']:.1f} | "
          f"{d['new_songs_per_s_achieved']:.2f} | {d['new_song_p50_ms']:.0f} / "
          f"{d['new_song_p99_ms']:.0f} ms | {ms('songs')} ms | {ms('interactions')} / "
          f"{ms('engagement')} / {ms('user_refresh')} ms | {d['max_loop_stall_ms']:.1f} "
          f"({d['idle_probe_max_stall_ms']:.1f}) ms | {c['worker']:.2f} / {c['broker']:.2f} / "
          f"{c['bench']:.3f} | {d['rss_gb']:.2f} GB |")
