#!/bin/bash
# nvidia-h200 lease, 2026-12-03 second run (issue 22): five NEW calibration rows, every one held out of tuning and
# committed before the run (benchmarks/vram_calibration.py ROWS, "Second run"): Gemma-2-9B default / lean /
# packing off at 512, Llama-2-7B r 64 at 512, Llama-2-7B packing off without checkpointing at 1024.
# One phase (two architectures), all rows at once; must end inside a 420 s call. Rows in $R/rows.json, table in $R/table.md.
#   bash benchmarks/device_jobs/h200-2026-12-03b-vram.sh $OUT/vram
R=${1:-/tmp/job}
mkdir -p "$R"
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1
export CAL_WORK=/tmp/vcal-work
nvidia-smi --query-gpu=name,memory.total --format=csv > "$R/gpu.txt" 2>&1
step vram 330 python benchmarks/vram_calibration.py --out "$R" --budget-gib 125 --parallel 8 --timeout 200 \
    --rows gemma2-default,gemma2-lean,gemma2-padded-512,llama2-r64-512,llama2-padded-gcoff-1024
echo "== $(date +%T) all done" >> "$R/progress"
