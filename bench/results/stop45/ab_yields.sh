#!/bin/bash
# Stop 45's A/B: the commit before the interactions step's yields (a worktree at /tmp/base45,
# made with `git worktree add /tmp/base45 b9567ec` and a link to this checkout's .venv) against
# this checkout, one soak each in the given order, at the sizes: 1M songs + 1M
# listeners, float16, 1,000 interactions/s + 2 new songs/s for 300 s (then the bench's
# 5,000/s minute), stall tracer off, the bench's default 50 ms producer linger; stop 42's
# driver (RATE, SONGS, SOAK_S, TRACE_MS and TAG still override).
#   bash bench/results/stop45/ab_yields.sh base new new base
BASE_DIR=/tmp/base45 OUT=/work/main/bench/results/stop45/ab N=1000000 SOAK_S=${SOAK_S:-300} \
    RATE=${RATE:-1000} SONGS=${SONGS:-2} exec bash /work/main/bench/results/stop42/ab_forward.sh "$@"
