#!/bin/bash
out=/work/main/bench/results/stop49/switch100k; mkdir -p $out
cd /work/main
for la in si1_a:1 si5_a:0 si5_b:0 si1_b:1; do
  label=${la%%:*}; v=${la##*:}
  extra=""; [ "$v" != 0 ] && extra="COLDSTREAM_SWITCH_INTERVAL_MS=$v"
  PYTHONPATH=/work/main .venv/bin/python bench/results/stop49/ab_soak.py $label $out 100000 120 300 20 $extra > $out/$label.log 2>&1
done
echo ALLDONE >> $out/done.txt
