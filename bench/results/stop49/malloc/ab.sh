#!/bin/bash
# glibc keeping freed memory, set for the worker through GLIBC_TUNABLES (not kept).
bash /work/main/bench/results/stop49/ab_setting.sh /work/main/bench/results/stop49/malloc100k \
    GLIBC_TUNABLES=glibc.malloc.trim_threshold=134217728:glibc.malloc.mmap_threshold=33554432:glibc.malloc.top_pad=16777216 \
    keep_a:on default_a:off default_b:off keep_b:on
