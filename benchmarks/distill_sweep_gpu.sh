#!/bin/bash
# On a lent GPU (carry scratch/ as for config_sweep_gpu.sh, models/evaluators and models/streamdit.pt):
# install the carried wheels, generate the world, distil every variant concurrently, summarise.
set -e
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site scratch/whl/*.whl
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1
python3 -c "import sys,types; sys.modules['av']=types.ModuleType('av'); from streamdit.data import main; main(['--out','data','--config','params.yaml'])" > /tmp/data.log 2>&1
echo "data generated"; nvidia-smi --query-gpu=name,memory.used --format=csv
mkdir -p /tmp/ds
for v in "$@"; do
  (python3 benchmarks/distill_sweep.py $v /tmp/ds > /tmp/ds_$v.log 2>&1; echo "$v done rc=$?") &
done
wait
for v in "$@"; do tail -2 /tmp/ds_$v.log; done
python3 benchmarks/distill_sweep.py summarise /tmp/ds | tee $OUT/summary.txt
cp /tmp/ds/*.json $OUT/ || true
