"""Stop 49: one scale soak of the checkout it runs in (this one, or the baseline worktree), for
an A/B of the packed proposals. Run from the checkout to measure, with PYTHONPATH set to it, so
that both the bench and the worker it starts import that checkout's code:

    cd CHECKOUT && PYTHONPATH=$PWD /work/main/.venv/bin/python \
        /work/main/bench/results/stop49/ab_soak.py LABEL OUT N SECONDS RATE SONGS_RATE \
        [KEY=VALUE ...]   (worker settings, e.g. COLDSTREAM_SWITCH_INTERVAL_MS=1)

float16, stall tracer off, a 10 s tail at the issue's 5,000/s (as stop 48's soaks)."""
import json
import sys
from pathlib import Path

from bench import scale

label, out = sys.argv[1], Path(sys.argv[2])
n, secs, rate, songs_rate = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), \
    float(sys.argv[6])
extra = dict(arg.split("=", 1) for arg in sys.argv[7:])
out.mkdir(parents=True, exist_ok=True)
rep = scale.run("full", out=out / label, n_songs=n, n_users=n, seconds=secs, rate=rate,
                songs_rate=songs_rate, vector_dtype="float16", issue_seconds=10.0,
                env={"COLDSTREAM_STALL_TRACE_MS": "0", **extra})
rep.save(out / label)
keys = ["cores", "kernel_cores", "page_faults_per_s", "interactions_per_s_offered",
        "interactions_per_s_achieved", "new_songs_per_s_offered", "new_songs_per_s_achieved",
        "new_song_p50_ms", "new_song_p99_ms", "rss_gb", "max_loop_stall_ms",
        "idle_probe_max_stall_ms", "merges_during_soak", "store_flushes_per_s",
        "store_flush_mean_ms"]
summary = {k: rep.summary.get(k) for k in keys} | {"code": scale.__file__, "settings": extra}
(out / f"{label}.summary.json").write_text(json.dumps(
    {"summary": summary, "stages": rep.summary.get("stages"),
     "gate_waits": rep.summary.get("gate_waits"),
     "at_issue_rate": rep.summary.get("at_issue_rate")}, indent=1, default=str))
print(label, json.dumps(summary, indent=1, default=str))
