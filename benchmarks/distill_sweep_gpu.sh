#!/bin/bash
# On a lent GPU (carry scratch/ as for config_sweep_gpu.sh, models/evaluators and models/streamdit.pt):
# set up (lent_gpu.sh), distil every variant concurrently, summarise.
source "$(dirname "$0")/lent_gpu.sh"
run_variants benchmarks/distill_sweep.py /tmp/ds "$@"
python3 benchmarks/distill_sweep.py summarise /tmp/ds | tee $OUT/summary.txt
cp /tmp/ds/*.json $OUT/ || true
