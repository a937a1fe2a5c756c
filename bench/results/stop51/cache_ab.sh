#!/bin/bash
# Stop 51's A/B of the song-vector cache at 1M (500/s + 10 songs/s for 300 s, the bench's
# default producers): label:checkout[:size.KEY=VALUE] ..., each run from its own worktree,
# one at a time.
out=$1; shift
while pgrep -f "stop51/soak.py" > /dev/null; do sleep 10; done  # the soak before it
for spec in "$@"; do
  IFS=: read -r label dir extra <<< "$spec"
  (cd $dir && PYTHONPATH=$PWD /work/main/.venv/bin/python bench/results/stop51/soak.py \
     $label $out 1000000 300 500 10 $extra > $out/$label.log 2>&1)
done
echo ALLDONE >> $out/done.txt
