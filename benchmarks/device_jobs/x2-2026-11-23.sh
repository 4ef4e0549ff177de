#!/bin/bash
# nvidia-h200-x2 lease of session 4 (#8): 1 vs 2 GPUs data-parallel at the same effective batch; the sharded path
# on both GPUs; then a model that needs sharding: Qwen2.5-14B at max_seq_length 4096 on GPUs capped at 20 GiB
# (auto parallelism must choose fsdp on 2; the 1-GPU side shows what one such card does).
#   bash benchmarks/device_jobs/x2-2026-11-23.sh /tmp/job
R=${1:-/tmp/job}
mkdir -p "$R"
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1
nvidia-smi --query-gpu=name,memory.total --format=csv > "$R/gpus.txt"
step ddp 900 python benchmarks/multi_gpu.py llama2-7b --gpus 1,2 --parallelism ddp --out "$R/multi_gpu-ddp.md"
step fsdp 600 python benchmarks/multi_gpu.py llama2-7b --gpus 2 --parallelism fsdp --out "$R/multi_gpu-fsdp.md"
if grep -q "rank 0 holds" "$R/fsdp.log"; then
    step needs_sharding 900 python benchmarks/multi_gpu.py qwen2.5-14b --gpus 2,1 --parallelism auto --micro 1 \
        --max-seq-length 4096 --examples-per-step 16 --steps 6 --warmup 2 --gpu-memory-gib 20 \
        --out "$R/multi_gpu-needs-sharding.md"
fi
echo "== $(date +%T) all done" >> "$R/progress"
