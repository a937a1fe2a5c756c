import json, sys
from pathlib import Path
from bench import scale
label, linger = sys.argv[1], int(sys.argv[2])
out = Path("/tmp/soak44")
rep = scale.run("full", out=out / label, n_songs=1_000_000, n_users=1_000_000, seconds=300, rate=float(sys.argv[3]) if len(sys.argv) > 3 else 500,
                songs_rate=2, vector_dtype="float16", producer_linger_ms=linger,
                env={"COLDSTREAM_STALL_TRACE_MS": "0"})
rep.save(out / label)
print(label, {k: rep.summary.get(k) for k in ["interactions_per_s_achieved", "new_song_p50_ms", "new_song_p99_ms", "max_loop_stall_ms", "cores"]})
