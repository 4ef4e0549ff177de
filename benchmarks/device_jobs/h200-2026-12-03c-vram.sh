#!/bin/bash
# nvidia-h200 lease, 2026-12-03 third run (issue 22): three NEW calibration rows of one architecture (Llama-2-7B: one
# model to build), every one held out of tuning and committed before the run (benchmarks/vram_calibration.py ROWS):
# r 64 at 512, packing off without checkpointing at 1024, lean at 512. Must end inside a 300 s call (the session's
# device time left). Rows in $R/rows.json, table in $R/table.md.
#   bash benchmarks/device_jobs/h200-2026-12-03c-vram.sh $OUT/vram
R=${1:-/tmp/job}
mkdir -p "$R"
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1
export CAL_WORK=/tmp/vcal-work
nvidia-smi --query-gpu=name,memory.total --format=csv > "$R/gpu.txt" 2>&1
step vram 255 python benchmarks/vram_calibration.py --out "$R" --budget-gib 125 --parallel 8 --timeout 170 \
    --rows llama2-r64-512,llama2-padded-gcoff-1024,llama2-lean-512
echo "== $(date +%T) all done" >> "$R/progress"
