"""Stop 51: one scale soak with the offering clients' settings as arguments, for the
producer-linger runs (float16, stall tracer off, a 10 s tail at the issue's 5,000/s):

    PYTHONPATH=$PWD .venv/bin/python bench/results/stop51/soak.py LABEL OUT N SECONDS RATE \
        SONGS_RATE [size.KEY=VALUE ...] [WORKER_SETTING=VALUE ...]

``size.producer_linger_ms=200``, ``size.songs_linger_ms=none`` (the songs share the
interactions' producer, as before stop 51)."""
import json
import sys
from pathlib import Path

from bench import scale

label, out = sys.argv[1], Path(sys.argv[2])
n, secs, rate, songs_rate = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), \
    float(sys.argv[6])
pairs = [arg.split("=", 1) for arg in sys.argv[7:]]
sizes = {k[5:]: (None if v == "none" else int(v)) for k, v in pairs if k.startswith("size.")}
env = {k: v for k, v in pairs if not k.startswith("size.")}
out.mkdir(parents=True, exist_ok=True)
rep = scale.run("full", out=out / label, n_songs=n, n_users=n, seconds=secs, rate=rate,
                songs_rate=songs_rate, vector_dtype="float16", issue_seconds=10.0,
                env={"COLDSTREAM_STALL_TRACE_MS": "0", **env}, **sizes)
rep.save(out / label)
keys = ["cores", "interactions_per_s_offered", "interactions_per_s_achieved",
        "new_songs_per_s_achieved", "new_song_p50_ms", "new_song_p99_ms", "rss_gb",
        "max_loop_stall_ms", "idle_probe_max_stall_ms", "merges_during_soak"]
summary = {k: rep.summary.get(k) for k in keys} | {"sizes": sizes, "settings": env}
(out / f"{label}.summary.json").write_text(json.dumps(
    {"summary": summary, "stages": rep.summary.get("stages"),
     "at_issue_rate": rep.summary.get("at_issue_rate")}, indent=1, default=str))
print(label, json.dumps(summary, indent=1, default=str))
