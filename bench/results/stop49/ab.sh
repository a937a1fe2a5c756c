#!/bin/bash
# usage: [BASE=worktree] ab.sh OUTDIR N SECS RATE SONGS label:arm ...  (BASE: /tmp/base49)
out=$1; n=$2; secs=$3; rate=$4; songs=$5; shift 5
for la in "$@"; do
  label=${la%%:*}; arm=${la##*:}
  dir=/work/main; [ "$arm" = base ] && dir=${BASE:-/tmp/base49}
  (cd $dir && PYTHONPATH=$dir /work/main/.venv/bin/python /work/main/bench/results/stop49/ab_soak.py $label $out $n $secs $rate $songs > $out/$label.log 2>&1)
done
echo ALLDONE >> $out/done.txt
