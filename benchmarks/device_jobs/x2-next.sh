#!/bin/bash
# For the next nvidia-h200-x2 lease (#8): the sharded path on a model the estimate says one GPU cannot hold.
# Session 5 proved DDP (1.92x, matching losses) and FSDP on Llama-2-7B; its Qwen2.5-14B FSDP run (20 GiB caps)
# trained 6 steps and then hung in the final save (now: a barrier after it).
# Qwen2.5-14B at max_seq_length 4096, GPUs capped at 16 GiB: the estimate says one GPU needs 14.6 GiB even lean
# (over 90 % of 16) and two sharded fit; the 1-GPU side shows what one such card really does (the lean estimate
# was 14.6 GiB against 11.3 measured at a 20 GiB cap). Watch: the final save of the 2-GPU side (stacks in
# $R/stacks), "adapter saved" in the table, the loss column (bf16-rounded under FSDP in session 5).
# Stack dumps are off unless STACKS=1 (lib.sh: they crashed busy processes on 2026-12-02); set it to read a hang.
#   setsid nohup bash benchmarks/device_jobs/x2-next.sh /tmp/job > /tmp/job.out 2>&1 &   then poll /tmp/job/progress
R=${1:-/tmp/job}
mkdir -p "$R"
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1
nvidia-smi --query-gpu=name,memory.total --format=csv > "$R/gpus.txt"
keep_logs() { cp /tmp/lorapilot-bench/multi-*.log "$R/" 2>/dev/null; }
step needs_sharding 900 python benchmarks/multi_gpu.py qwen2.5-14b --gpus 2,1 --parallelism auto --micro 1 \
    --max-seq-length 4096 --examples-per-step 16 --steps 6 --warmup 2 --gpu-memory-gib 16 --side-timeout 400 \
    --out "$R/multi_gpu-needs-sharding.md"
keep_logs
echo "== $(date +%T) all done" >> "$R/progress"
