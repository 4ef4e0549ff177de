#!/bin/bash
# Where a multi-GPU run hangs: every process writes its Python stacks to OUT/stack-PID.txt each 45 s
# (sitecustomize.py here); after WAIT_S the workers are killed.
#   bash benchmarks/device_jobs/diag/hang.sh OUT WAIT_S multi_gpu.py args...
OUT=$1; WAIT=$2; shift 2
mkdir -p "$OUT"
cd "$(dirname "$0")/../../.." || exit 1
export PYTHONPATH="$(pwd)/benchmarks/device_jobs/diag:$PYTHONPATH" STACK_DIR=$OUT STACK_EVERY_S=45
python benchmarks/multi_gpu.py "$@" > "$OUT/run.log" 2>&1 &
sleep "$WAIT"
ps -eo pid,pcpu,rss,etime,args | grep -E "[m]ulti_gpu.py|[c]ompile_worker" | cut -c1-160 > "$OUT/ps.txt"
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv >> "$OUT/ps.txt"
pkill -9 -f "[m]ulti_gpu.py.*--worker"
wait
