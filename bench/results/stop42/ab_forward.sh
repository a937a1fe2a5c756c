#!/bin/bash
# Stop 42's A/B: the previous commit (a worktree at /tmp/base42) against this checkout, one
# soak each, in the given order; by default 200k songs and listeners, overloaded (1,500
# interactions/s + 1 song/s for 240 s). N, SOAK_S, RATE, SONGS, TRACE_MS (the stall tracer) and TAG override that.
#   bash bench/results/stop42/ab_forward.sh base new [base new ...]
#   N=1000000 SOAK_S=300 RATE=400 SONGS=2 TAG=_1m bash bench/results/stop42/ab_forward.sh base new
# BASE_DIR and OUT choose the baseline worktree and the results folder (stop 43 reuses it).
out=${OUT:-/work/main/bench/results/stop42/ab}
mkdir -p $out
i=0
for arm in "$@"; do
    i=$((i + 1))
    dir=/work/main; [ "$arm" = base ] && dir=${BASE_DIR:-/tmp/base42}
    label="${arm}${i}${TAG:-}"
    (cd $dir && .venv/bin/python bench/results/stop41/ab_soak.py "$label" $out ${TRACE_MS:-0} ${N:-200000} \
        ${SOAK_S:-240} ${RATE:-1500} ${SONGS:-1} > $out/$label.log 2>&1)
done
