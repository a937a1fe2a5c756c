#!/bin/bash
# Stop 50's A/B soaks: stop 49's driver, the baseline (d31a68d) in the worktree /tmp/base50.
#   bash bench/results/stop50/ab.sh OUTDIR N SECS RATE SONGS label:new|base ...
BASE=/tmp/base50 exec bash /work/main/bench/results/stop49/ab.sh "$@"
