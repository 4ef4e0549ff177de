#!/bin/bash
# What ran on the nvidia-h100-x1 lease of session 5 (results: benchmarks/results/levers-h100-2026-11-23e.md):
# lever rows 5 (the default) and 10 (fused AdamW) on both architectures. A longer version that also measured
# row 9 lost its results when the machine was released between two polls.
R=${1:-/tmp/job}
mkdir -p "$R"
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1
step l3-5-10 330 python benchmarks/levers.py llama3-8b --rows 5,10 --steps 10 --out "$R/levers-llama3-a.md"
step l2-5-10 240 python benchmarks/levers.py llama2-7b --rows 5,10 --steps 10 --out "$R/levers-llama2-a.md"
cp /tmp/lorapilot-bench/lever-*.json "$R/"
