"""Stop 48: stop 41's float16 scale soak with py-spy attached to the worker for a window of the
soak (``--gil``: only samples where a thread holds the GIL, so the profile says what the one
core of the worker's GIL is spent on).

    .venv/bin/python bench/results/stop48/spy_soak.py LABEL OUT N SECONDS RATE SONGS_RATE \
        SPY_DELAY SPY_SECONDS [KEY=VALUE ...]"""
import asyncio, json, subprocess, sys, threading
from pathlib import Path
from bench import scale

label, out = sys.argv[1], Path(sys.argv[2])
n, secs, rate, songs_rate = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), \
    float(sys.argv[6])
delay, spy_s = float(sys.argv[7]), int(sys.argv[8])
extra = dict(arg.split("=", 1) for arg in sys.argv[9:])
out.mkdir(parents=True, exist_ok=True)
SPY = "/tmp/spyenv/bin/py-spy"
started = []
real_soak_run = scale.soak_run


async def spied_soak_run(bs, worker, *args, **kwargs):
    if not started and spy_s > 0:
        started.append(1)
        pid = worker.process.pid

        def spy() -> None:
            import time
            time.sleep(delay)
            for fmt, suffix, gil in (("raw", "gil.txt", ["--gil"]),):
                subprocess.run([SPY, "record", "-p", str(pid), "-d", str(spy_s), "-r", "100",
                                "-f", fmt, "-o", str(out / f"{label}.{suffix}"), "--threads",
                                "--nonblocking", *gil], check=False,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        threading.Thread(target=spy, daemon=True).start()
    return await real_soak_run(bs, worker, *args, **kwargs)

scale.soak_run = spied_soak_run
rep = scale.run("full", out=out / label, n_songs=n, n_users=n, seconds=secs, rate=rate,
                songs_rate=songs_rate, vector_dtype="float16", issue_seconds=10.0,
                env={"COLDSTREAM_STALL_TRACE_MS": "0", **extra})
rep.save(out / label)
keys = ["cores", "kernel_cores", "page_faults_per_s", "interactions_per_s_offered", "interactions_per_s_achieved", "new_songs_per_s_offered",
        "new_songs_per_s_achieved", "new_song_p50_ms", "new_song_p99_ms", "rss_gb",
        "max_loop_stall_ms", "idle_probe_max_stall_ms", "merges_during_soak",
        "store_flushes_per_s", "store_flush_mean_ms"]
summary = {k: rep.summary.get(k) for k in keys} | {"settings": extra}
(out / f"{label}.summary.json").write_text(json.dumps(
    {"summary": summary, "stages": rep.summary.get("stages"),
     "gate_waits": rep.summary.get("gate_waits")}, indent=1, default=str))
print(label, json.dumps(summary, indent=1, default=str))
