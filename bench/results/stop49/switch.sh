#!/bin/bash
# The 1 ms GIL switch interval A/B (run on a tree with COLDSTREAM_SWITCH_INTERVAL_MS patched in; not kept).
bash /work/main/bench/results/stop49/ab_setting.sh /work/main/bench/results/stop49/switch100k \
    COLDSTREAM_SWITCH_INTERVAL_MS=1 si1_a:on si5_a:off si5_b:off si1_b:on
