#!/bin/bash
# For the next session's nvidia-h200-x2 lease (#8): 1 vs 2 GPUs data-parallel at the same effective batch, then
# the sharded path on both GPUs (the "fsdp: rank 0 holds X of Y" line in its log shows the split).
#   bash benchmarks/device_jobs/x2-next.sh /tmp/job
R=${1:-/tmp/job}
mkdir -p "$R"
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1
step ddp 900 python benchmarks/multi_gpu.py llama2-7b --gpus 1,2 --parallelism ddp --out "$R/multi_gpu-ddp.md"
step fsdp 600 python benchmarks/multi_gpu.py llama2-7b --gpus 2 --parallelism fsdp --out "$R/multi_gpu-fsdp.md"
echo "== $(date +%T) all done" >> "$R/progress"
