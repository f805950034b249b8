#!/bin/bash
# On a lent GPU (carry scratch/ with the open_clip, ftfy, wcwidth wheels and captions_fp16.pt, and
# models/evaluators): set up (lent_gpu.sh), run every variant concurrently, summarise.
source "$(dirname "$0")/lent_gpu.sh"
run_variants benchmarks/config_sweep.py /tmp/sw "$@"
python3 benchmarks/config_sweep.py summarise /tmp/sw
cp /tmp/sw/summary.txt /tmp/sw/strips.png $OUT/ || true
(cd /tmp/sw && tar czf $OUT/results.tgz *.json *.npy)
