#!/bin/bash
# What ran second on the nvidia-h200-x2 lease of session 5: x2-2026-11-23b.sh's sharded part again, after the fix
# for bitsandbytes' optimizer on sharded parameters (adamw_torch when sharded).
R=${1:-/tmp/job2}
mkdir -p "$R"
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1
keep_logs() { cp /tmp/lorapilot-bench/multi-*.log "$R/" 2>/dev/null; }
step fsdp 420 python benchmarks/multi_gpu.py llama2-7b --gpus 2 --parallelism fsdp --side-timeout 360 \
    --out "$R/multi_gpu-fsdp.md"
keep_logs
step needs_sharding 600 python benchmarks/multi_gpu.py qwen2.5-14b --gpus 2,1 --parallelism auto --micro 1 \
    --max-seq-length 4096 --examples-per-step 16 --steps 6 --warmup 2 --gpu-memory-gib 20 --side-timeout 360 \
    --out "$R/multi_gpu-needs-sharding.md"
keep_logs
echo "== $(date +%T) all done" >> "$R/progress"
