#!/bin/bash
# The config sweep on a GPU machine (needs scratch/whl with the open_clip, ftfy, wcwidth wheels,
# scratch/captions_fp16.pt and models/evaluators): set up (gpu_setup.sh), run every variant
# concurrently, summarise; the summary, strips and per-variant results go to $OUT.
source "$(dirname "$0")/gpu_setup.sh"
run_variants benchmarks/config_sweep.py /tmp/sw "$@"
python3 benchmarks/config_sweep.py summarise /tmp/sw
cp /tmp/sw/summary.txt /tmp/sw/strips.png $OUT/ || true
(cd /tmp/sw && tar czf $OUT/results.tgz *.json *.npy)
