#!/bin/bash
out=/work/main/bench/results/stop49/malloc100k; mkdir -p $out
cd /work/main
T=glibc.malloc.trim_threshold=134217728:glibc.malloc.mmap_threshold=33554432:glibc.malloc.top_pad=16777216
for la in keep_a:1 default_a:0 default_b:0 keep_b:1; do
  label=${la%%:*}; v=${la##*:}
  extra=""; [ "$v" != 0 ] && extra="GLIBC_TUNABLES=$T"
  PYTHONPATH=/work/main .venv/bin/python bench/results/stop49/ab_soak.py $label $out 100000 120 300 20 $extra > $out/$label.log 2>&1
done
echo ALLDONE >> $out/done.txt
