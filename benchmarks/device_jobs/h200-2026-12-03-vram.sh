#!/bin/bash
# nvidia-h200 lease, 2026-12-03 (issue 22): the VRAM estimate against the engine's own run, as a user runs it
# (`lorapilot estimate --json`, then `lorapilot train`) on 16 configurations of Llama-2-7B, Llama-3-8B, Qwen2.5-7B
# and Mistral-7B architectures; rows in $R/rows.json, table in $R/table.md.
#   setsid nohup bash benchmarks/device_jobs/h200-2026-12-03-vram.sh /tmp/job > /tmp/job.out 2>&1 &
R=${1:-/tmp/job}
mkdir -p "$R"
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1
export CAL_WORK=/tmp/vcal-work
step vram 1500 python benchmarks/vram_calibration.py --out "$R" --budget-gib 125 --parallel 8
echo "== $(date +%T) all done" >> "$R/progress"
