#!/bin/bash
# On a lent GPU (carry scratch/ as for config_sweep_gpu.sh, and models/evaluators): set up
# (lent_gpu.sh), train the gpu profile's model for STEPS steps and evaluate it.
STEPS=${1:?steps}
source "$(dirname "$0")/lent_gpu.sh"
python3 -u benchmarks/gpu_profile_run.py "$STEPS" /tmp/gp cuda || true
cd /tmp/gp && cp *.json *.md *.csv *.png "$OUT"/ 2>/dev/null || true
ls "$OUT"
