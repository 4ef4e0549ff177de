#!/bin/bash
# nvidia-h200, 2026-12-03 (issue 26): the user's path measured from the outside. `lorapilot train CONFIG` (defaults,
# then memory: lean) beside a best stack written as the transformers docs write it, on one generated alpaca JSONL,
# Llama-2-7B. One foreground call under 600 s (no detached job to poll): results written under $1 as they come.
#   bash benchmarks/device_jobs/h200-2026-12-03.sh $OUT        (ARCH, SIDES, STEPS, WARMUP, DEADLINE_S to change it)
R=${1:?results directory}
mkdir -p "$R"
cd "$(dirname "$0")/../.." || exit 1
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$R/gpu.txt" 2>&1
python3 benchmarks/user_path.py ${ARCH:-llama2-7b} --sides ${SIDES:-engine,best,lean} --steps ${STEPS:-80} \
    --warmup ${WARMUP:-20} --deadline-s ${DEADLINE_S:-520} --work /tmp/up --out "$R/user_path.md" > "$R/user_path.log" 2>&1
# the sides' logs, metrics and result files; not the models, the data, checkpoints or adapters
tar czf "$R/up.tgz" -C /tmp/up --exclude=models --exclude='alpaca-*' --exclude=checkpoints --exclude=adapter \
    --exclude=best-out . 2>/dev/null
tail -25 "$R/user_path.log"
