#!/bin/bash
# Session 3's second H100 job: Llama-3-8B's four sides over more steady steps, the callback's cost after
# throttling its NVML and status writes, and the first-step stall with transformers' own block mask.
#   bash benchmarks/device_jobs/h100-2026-11-23c.sh /tmp/job
R=${1:-/tmp/job}
mkdir -p "$R"
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1
step samples_own 400 python benchmarks/sample_cost.py llama2-7b --own-block-mask --out "$R/sample_cost_own.txt"
step throughput_l3 900 python benchmarks/throughput.py llama3-8b --steps 12 --out "$R/throughput-llama3-8b.md"
cp -r /tmp/lorapilot-bench/*.json "$R/" 2>/dev/null
step samples_default 300 python benchmarks/sample_cost.py llama2-7b --out "$R/sample_cost_default.txt"
echo "== $(date +%T) all done" >> "$R/progress"
