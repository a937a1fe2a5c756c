#!/bin/bash
# Stop 45's A/B: the commit before the interactions step's yields (a worktree at /tmp/base45,
# made with `git worktree add /tmp/base45 b9567ec` and a link to this checkout's .venv) against
# this checkout, one soak each in the given order, at the sizes: 1M songs + 1M
# listeners, float16, 1,000 interactions/s + 2 new songs/s for 300 s (then the bench's
# 5,000/s minute), stall tracer off, the bench's default 50 ms producer linger.
#   bash bench/results/stop45/ab_yields.sh base new [new base ...]
# RATE, SONGS, SOAK_S and TRACE_MS override; stop 41's driver writes OUT/LABEL/scale.json and
# OUT/LABEL.summary.json.
out=/work/main/bench/results/stop45/ab
mkdir -p $out
i=0
for arm in "$@"; do
    i=$((i + 1))
    dir=/work/main; [ "$arm" = base ] && dir=/tmp/base45
    label="${arm}${i}${TAG:-}"
    (cd $dir && .venv/bin/python /work/main/bench/results/stop41/ab_soak.py "$label" $out \
        ${TRACE_MS:-0} 1000000 ${SOAK_S:-300} ${RATE:-1000} ${SONGS:-2} > $out/$label.log 2>&1)
done
