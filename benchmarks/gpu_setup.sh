#!/bin/bash
# Set-up of a GPU machine whose image has PyTorch but no open_clip, DVC or PyAV, sourced by
# config_sweep_gpu.sh, distill_sweep_gpu.sh and gpu_profile_run.sh: installs the wheels in scratch/whl
# into /tmp/site, generates the world from params.yaml (PyAV stubbed: the generator writes no video)
# and defines run_variants.
set -e
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site scratch/whl/*.whl
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1
python3 -c "import sys,types; sys.modules['av']=types.ModuleType('av'); from streamdit.data import main; main(['--out','data','--config','params.yaml'])" > /tmp/data.log 2>&1
echo "data generated"; nvidia-smi --query-gpu=name,memory.used --format=csv

# run_variants SCRIPT OUT_DIR VARIANT...: `python3 SCRIPT VARIANT OUT_DIR` for every variant at once,
# then the end of each one's log.
run_variants() {
  local script=$1 dir=$2 v
  shift 2
  mkdir -p "$dir"
  for v in "$@"; do
    (python3 "$script" "$v" "$dir" > "$dir.$v.log" 2>&1; echo "$v done rc=$?") &
  done
  wait
  for v in "$@"; do tail -3 "$dir.$v.log"; done
}
