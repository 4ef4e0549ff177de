#!/bin/bash
# Session 3's third H100 job: Llama-3-8B's four sides over 12 steps, and the callback's cost per step
# read off the engine side's metrics.   bash benchmarks/device_jobs/h100-2026-11-23d.sh /tmp/job
R=${1:-/tmp/job}
mkdir -p "$R"
cd "$(dirname "$0")/../.." || exit 1
python benchmarks/callback_cost.py > "$R/nvml.txt" 2>&1
echo "== $(date +%T) start throughput" >> "$R/progress"
timeout 900 python benchmarks/throughput.py llama3-8b --steps 12 --out "$R/throughput-llama3-8b.md" > "$R/throughput.log" 2>&1
echo "== $(date +%T) end throughput rc=$?" >> "$R/progress"
cp /tmp/lorapilot-bench/llama3-8b-*.json "$R/" 2>/dev/null
python benchmarks/callback_cost.py /tmp/lorapilot-bench/llama3-8b-engine /tmp/lorapilot-bench/llama3-8b-lean > "$R/callback.txt" 2>&1
echo "== $(date +%T) all done" >> "$R/progress"
