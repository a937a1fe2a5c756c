"""A float16 scale soak with the stall tracer at a given threshold (stop 39); the report to
OUT/LABEL/scale.json and a summary (figures, stall sites, the worker's stall lines) to
OUT/LABEL.summary.json.

    .venv/bin/python bench/results/stop39/trace_soak.py LABEL OUT [TRACE_MS N SECONDS]"""
import json, sys
from pathlib import Path
from bench import scale

label, out = sys.argv[1], Path(sys.argv[2])
trace_ms = sys.argv[3] if len(sys.argv) > 3 else "40"
n = int(sys.argv[4]) if len(sys.argv) > 4 else 200_000
secs = float(sys.argv[5]) if len(sys.argv) > 5 else 240.0
out.mkdir(parents=True, exist_ok=True)
rep = scale.run("full", out=out / label, n_songs=n, n_users=n, seconds=secs,
                vector_dtype="float16", env={"COLDSTREAM_STALL_TRACE_MS": trace_ms})
rep.save(out / label)
keys = ["interactions_per_s_achieved", "new_songs_per_s_achieved", "new_song_p50_ms",
        "new_song_p99_ms", "rss_gb", "max_loop_stall_ms", "idle_probe_max_stall_ms",
        "max_gc_gen01_pause_ms", "merges_during_soak", "stall_sites"]
summary = {k: rep.summary.get(k) for k in keys}
(out / f"{label}.summary.json").write_text(json.dumps(
    {"summary": summary, "at_issue": rep.summary.get("at_issue_rate"),
     "stages": rep.summary.get("stages"), "stall_log": rep.extra.get("stall_log")},
    indent=1, default=str))
print(label, json.dumps(summary, indent=1, default=str))
