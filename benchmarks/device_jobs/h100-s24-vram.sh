#!/bin/bash
# One H100, session 24: the VRAM estimate against the trainer as it is now (the calibration rows of 2026-12-03 ran
# the eager path of that day; since then varlen attention, torch's fused AdamW and the mask-free dropout's rules
# changed what a run holds). Six of the 2026-12-03 rows on three architectures, asked for the H100 preset, six
# trainers at a time within 70 GiB. Must end inside a ~420 s call. Rows in $OUT/rows.json, table in $OUT/table.md.
#   bash benchmarks/device_jobs/h100-s24-vram.sh $OUT       (carry .whl and .whl25)
OUT=${1:?results directory}
JOB=s24vram CALL=1 source "$(dirname "$0")/begin.sh"
R=$OUT
. benchmarks/device_jobs/lib.sh
export CAL_WORK=/tmp/vcal-work
nvidia-smi --query-gpu=name,memory.total --format=csv > "$R/gpu.txt" 2>&1
step vram "${LIMIT_S:-400}" python benchmarks/vram_calibration.py --out "$R" --gpu "${GPU:-h100-80}" --budget-gib "${BUDGET_GIB:-70}" \
    --parallel 6 --timeout 240 \
    --rows "${ROWS:-llama2-default,llama2-lean,llama2-padded,llama3-default,llama3-lean,qwen7-default}"
echo "== $(date +%T) all done" >> "$R/progress"
