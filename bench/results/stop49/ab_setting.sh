#!/bin/bash
# Stop 49: an A/B of one worker environment setting on this checkout, one soak per label in
# the given order: 100k songs and listeners, 300 interactions/s + 20 new songs/s for 120 s.
#   bash bench/results/stop49/ab_setting.sh OUT KEY=VALUE label:on|off ...
out=$1; setting=$2; shift 2
mkdir -p $out
cd /work/main
for la in "$@"; do
  label=${la%%:*}
  extra=""; [ "${la##*:}" = on ] && extra="$setting"
  PYTHONPATH=/work/main .venv/bin/python bench/results/stop49/ab_soak.py $label $out 100000 120 300 20 $extra > $out/$label.log 2>&1
done
echo ALLDONE >> $out/done.txt
