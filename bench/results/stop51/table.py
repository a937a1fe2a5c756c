"""Stop 51: one line per 1M soak (``scale.json`` under the folders given), with the two
2 s scrape windows in which the ``user_update`` stage took the most time and the median
window (typically 0.3 s at 500/s). The song-vector cache's doublings showed in every run of
the old cache in the windows ending near 137 and 283 s (65k->131k and 131k->262k songs
cached). Runs labelled ``fix_*`` are the new cache.

    python bench/results/stop51/table.py bench/results/stop51/cache1m ..."""
import json
import sys
from pathlib import Path


def windows(scrapes: list[dict]) -> list[tuple[int, float]]:
    """(end of window s, user_update seconds in it) for each scrape after the first."""
    out, prev = [], None
    for s in scrapes:
        now = s["stages"].get("user_update")
        if prev is not None and now is not None:
            out.append((round(s["t"]), round(now[0] - prev[0] if isinstance(now, list)
                                                else now - prev, 2)))
        prev = now if now is not None else prev
    return out


print("| run | cache | producers: songs / interactions linger ms | interactions/s | songs/s "
      "| new song p50 / p99 ms | user_update, two largest windows (median) s "
      "| search ms per song | cores: worker / broker / bench | longest stall (idle probe) ms "
      "| RSS GB |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for folder in sys.argv[1:]:
    for path in sorted(Path(folder).glob("*/scale.json"), key=lambda p: p.stat().st_mtime):
        d = json.loads(path.read_text())
        w = windows(d["extra"]["scrapes"])
        top = sorted(w, key=lambda tw: -tw[1])[:2]
        median = sorted(v for _, v in w)[len(w) // 2]
        p, c = d["params"], d["cores"]
        songs = "shared" if p.get("songs_linger_ms") is None else p["songs_linger_ms"]
        label = path.parent.name
        print(f"| {label} | {'new' if label.startswith('fix') else 'old'} "
              f"| {songs} / {p['producer_linger_ms']} "
              f"| {d['interactions_per_s_achieved']:.1f} | {d['new_songs_per_s_achieved']:.2f} "
              f"| {d['new_song_p50_ms']:,.0f} / {d['new_song_p99_ms']:,.0f} "
              f"| {', '.join(f'{v:.2f} at {t}' for t, v in top)} ({median:.2f}) "
              f"| {d['stages']['search']['mean_ms']:.1f} "
              f"| {c['worker']:.2f} / {c['broker']:.2f} / {c['bench']:.3f} "
              f"| {d['max_loop_stall_ms']:.1f} ({d['idle_probe_max_stall_ms']:.1f}) "
              f"| {d['rss_gb']:.2f} |")
