#!/bin/bash
# The gpu profile's first stages on a GPU machine (needs scratch/ as for config_sweep_gpu.sh, and
# models/evaluators): set up (gpu_setup.sh), train the gpu profile's model for STEPS steps and
# evaluate it; the results go to $OUT.
STEPS=${1:?steps}
source "$(dirname "$0")/gpu_setup.sh"
python3 -u benchmarks/gpu_profile_run.py "$STEPS" /tmp/gp cuda || true
cd /tmp/gp && cp *.json *.md *.csv *.png "$OUT"/ 2>/dev/null || true
ls "$OUT"
