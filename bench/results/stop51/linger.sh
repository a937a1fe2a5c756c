#!/bin/bash
# Stop 51's 1M soaks by the offering producers' lingers, one at a time, from the checkout
# in $DIR (a worktree of the commit measured): label:songs_linger:interactions_linger ...
out=$1; shift
for spec in "$@"; do
  IFS=: read -r label songs inter <<< "$spec"
  (cd ${DIR:-/tmp/soak51} && PYTHONPATH=$PWD /work/main/.venv/bin/python \
     bench/results/stop51/soak.py $label $out 1000000 300 500 10 \
     size.songs_linger_ms=$songs size.producer_linger_ms=$inter > $out/$label.log 2>&1)
done
echo ALLDONE >> $out/done.txt
