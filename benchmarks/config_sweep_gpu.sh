#!/bin/bash
# On a lent GPU (carry scratch/ with the open_clip, ftfy, wcwidth wheels and captions_fp16.pt, and
# models/evaluators): install carried wheels, generate the world, run every variant concurrently, summarise.
set -e
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site scratch/whl/*.whl
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1
python3 -c "import sys,types; sys.modules['av']=types.ModuleType('av'); from streamdit.data import main; main(['--out','data','--config','params.yaml'])" > /tmp/data.log 2>&1
echo "data generated"; nvidia-smi --query-gpu=name,memory.used --format=csv
mkdir -p /tmp/sw
for v in "$@"; do
  (python3 benchmarks/config_sweep.py $v /tmp/sw > /tmp/sw_$v.log 2>&1; echo "$v done rc=$?") &
done
wait
for v in "$@"; do tail -3 /tmp/sw_$v.log; done
python3 benchmarks/config_sweep.py summarise /tmp/sw
cp /tmp/sw/summary.txt /tmp/sw/strips.png $OUT/ || true
(cd /tmp/sw && tar czf $OUT/results.tgz *.json *.npy)
