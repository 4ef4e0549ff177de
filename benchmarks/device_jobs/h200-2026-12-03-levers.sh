#!/bin/bash
# nvidia-h200, 2026-12-03 (issue 26): the speed levers on the user's path. `lorapilot train CONFIG` with each lever
# switched in the trainer (benchmarks/user_path.py's lever sides) beside the default and the docs-style best stack,
# one generated alpaca JSONL, Llama-2-7B; then the adapters and losses of every side against the default's.
# Two calls back to back on one warm machine share /tmp/up (models, data, every side's run): the second call's
# tables cover both.  One foreground call under 600 s, results under $1 as they come.
#   SIDES=engine,compiled,lean10k,cudagraphs bash benchmarks/device_jobs/h200-2026-12-03-levers.sh $OUT
#   (ARCH, SIDES, STEPS, WARMUP, DEADLINE_S, SIDE_S to change it)
R=${1:?results directory}
mkdir -p "$R"
cd "$(dirname "$0")/../.." || exit 1
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
ARCH=${ARCH:-llama2-7b}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$R/gpu.txt" 2>&1
python3 benchmarks/user_path.py $ARCH --sides ${SIDES:?sides} --steps ${STEPS:-80} --warmup ${WARMUP:-20} \
    --deadline-s ${DEADLINE_S:-500} --side-timeout-s ${SIDE_S:-200} --work /tmp/up --out "$R/user_path.md" > "$R/user_path.log" 2>&1
# every side on this machine so far (this call's and an earlier call's), one table; adapters against the default
python3 benchmarks/user_path.py --retable /tmp/up --warmup ${WARMUP:-20} --out "$R/user_path_all.md" >> "$R/user_path.log" 2>&1
python3 benchmarks/adapter_agreement.py /tmp/up $ARCH --out "$R/adapters.md" > "$R/adapters.log" 2>&1
# the sides' logs, metrics and result files; not the models, the data, checkpoints or adapters
tar czf "$R/up.tgz" -C /tmp/up --exclude=models --exclude='alpaca-*' --exclude=checkpoints --exclude=adapter \
    --exclude=best-out --exclude='*.pickle' . 2>/dev/null
tail -22 "$R/user_path_all.md"; cat "$R/adapters.md"; tail -5 "$R/adapters.log"
