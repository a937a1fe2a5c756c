#!/bin/bash
# Stop 43's A/B: the previous commit (a worktree at /tmp/base43, made with
# `git worktree add /tmp/base43 6676368` and a link to this checkout's .venv) against this
# checkout (the by-song forwards batched per partition), one soak each, in the given order;
# stop 42's driver with its defaults (200k, 1,500/s + 1 song/s for 240 s) and overrides.
#   bash bench/results/stop43/ab_batched.sh base new new base
#   N=1000000 SOAK_S=300 RATE=500 SONGS=2 TAG=_1m bash bench/results/stop43/ab_batched.sh new base
BASE_DIR=/tmp/base43 OUT=/work/main/bench/results/stop43/ab \
    exec bash /work/main/bench/results/stop42/ab_forward.sh "$@"
