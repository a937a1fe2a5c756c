"""A float16 scale soak at a given offered rate, with the stall tracer at a threshold (stop 41:
stop 40's driver plus worker settings as trailing KEY=VALUE arguments, so that both arms of an
A/B run from one checkout). The report goes to OUT/LABEL/scale.json and a summary (figures,
stall sites, the store's flush times) to OUT/LABEL.summary.json.

    .venv/bin/python bench/results/stop41/ab_soak.py LABEL OUT TRACE_MS N SECONDS RATE SONGS_RATE \
        [COLDSTREAM_ENGINE_PAYLOAD_INDEXES=true ...]"""
import json, sys
from pathlib import Path
from bench import scale

label, out = sys.argv[1], Path(sys.argv[2])
trace_ms, n, secs, rate, songs_rate = sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), \
    float(sys.argv[6]), float(sys.argv[7])
extra = dict(arg.split("=", 1) for arg in sys.argv[8:])
out.mkdir(parents=True, exist_ok=True)
rep = scale.run("full", out=out / label, n_songs=n, n_users=n, seconds=secs, rate=rate,
                songs_rate=songs_rate, vector_dtype="float16",
                env={"COLDSTREAM_STALL_TRACE_MS": trace_ms, **extra})
rep.save(out / label)
keys = ["interactions_per_s_offered", "interactions_per_s_achieved", "new_songs_per_s_offered",
        "new_songs_per_s_achieved", "new_song_p50_ms", "new_song_p99_ms", "rss_gb",
        "max_loop_stall_ms", "idle_probe_max_stall_ms", "max_gc_gen01_pause_ms",
        "merges_during_soak", "store_flushes_per_s", "store_flush_mean_ms", "stall_sites"]
summary = {k: rep.summary.get(k) for k in keys} | {"settings": extra}
(out / f"{label}.summary.json").write_text(json.dumps(
    {"summary": summary, "stages": rep.summary.get("stages"),
     "stall_log": rep.extra.get("stall_log")}, indent=1, default=str))
print(label, json.dumps(summary, indent=1, default=str))
