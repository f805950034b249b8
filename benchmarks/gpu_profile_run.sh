#!/bin/bash
# On a lent GPU (carry scratch/ as for config_sweep_gpu.sh, and models/evaluators): install the carried
# wheels, generate the world, train the gpu profile's model for STEPS steps and evaluate it.
set -e
STEPS=${1:?steps}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site scratch/whl/*.whl
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1
python3 -c "import sys,types; sys.modules['av']=types.ModuleType('av'); from streamdit.data import main; main(['--out','data','--config','params.yaml'])" > /tmp/data.log 2>&1
echo "data generated"; nvidia-smi --query-gpu=name,memory.used --format=csv
python3 -u benchmarks/gpu_profile_run.py "$STEPS" /tmp/gp cuda || true
cd /tmp/gp && cp *.json *.md *.csv *.png "$OUT"/ 2>/dev/null || true
ls "$OUT"
