#!/bin/bash
# The distillation sweep on a GPU machine (needs scratch/ as for config_sweep_gpu.sh, models/evaluators
# and models/streamdit.pt): set up (gpu_setup.sh), distil every variant concurrently, summarise; the
# summary and per-variant results go to $OUT.
source "$(dirname "$0")/gpu_setup.sh"
run_variants benchmarks/distill_sweep.py /tmp/ds "$@"
python3 benchmarks/distill_sweep.py summarise /tmp/ds | tee $OUT/summary.txt
cp /tmp/ds/*.json $OUT/ || true
