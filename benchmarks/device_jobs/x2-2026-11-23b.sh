#!/bin/bash
# For the next nvidia-h200-x2 lease (#8). Session 4 ran an earlier version: its 2-GPU side never finished the
# first step (benchmarks/results/ddp-first-step-2026-11-23.md); the trainer now turns dynamo's DDP graph splitter
# off. In order: 1 vs 2 GPUs data-parallel at the same effective batch; the sharded path on both GPUs; a model
# that needs sharding: Qwen2.5-14B at max_seq_length 4096 on GPUs capped at 20 GiB (auto must choose fsdp on 2;
# the 1-GPU side shows what one such card does). Each side stops after --side-timeout and leaves its log.
#   setsid nohup bash benchmarks/device_jobs/x2-next.sh /tmp/job &   then poll /tmp/job/progress
R=${1:-/tmp/job}
mkdir -p "$R"
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1
nvidia-smi --query-gpu=name,memory.total --format=csv > "$R/gpus.txt"
# If a side hangs again, every process's Python stacks are in $R/stacks (written each minute; diag/sitecustomize.py).
mkdir -p "$R/stacks"
export PYTHONPATH="$(pwd)/benchmarks/device_jobs/diag:$PYTHONPATH" STACK_DIR="$R/stacks" STACK_EVERY_S=60
keep_logs() { cp /tmp/lorapilot-bench/multi-*.log "$R/" 2>/dev/null; }
step ddp 1000 python benchmarks/multi_gpu.py llama2-7b --gpus 1,2 --parallelism ddp --side-timeout 420 \
    --out "$R/multi_gpu-ddp.md"
keep_logs
step fsdp 600 python benchmarks/multi_gpu.py llama2-7b --gpus 2 --parallelism fsdp --side-timeout 420 \
    --out "$R/multi_gpu-fsdp.md"
keep_logs
if grep -q "rank 0 holds" "$R/fsdp.log"; then
    step needs_sharding 1000 python benchmarks/multi_gpu.py qwen2.5-14b --gpus 2,1 --parallelism auto --micro 1 \
        --max-seq-length 4096 --examples-per-step 16 --steps 6 --warmup 2 --gpu-memory-gib 20 --side-timeout 420 \
        --out "$R/multi_gpu-needs-sharding.md"
    keep_logs
fi
echo "== $(date +%T) all done" >> "$R/progress"
