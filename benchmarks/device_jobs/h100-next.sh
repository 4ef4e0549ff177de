#!/bin/bash
# For the next one-GPU lease (H100 or H200): the compiled-layers lever (row 9) over longer runs on both
# architectures, the first lever to try for #12's stretch goal. Session 7 measured it once, 10 steps on Llama-3-8B
# (1.07x, +0.45 GiB; benchmarks/results/h200-2026-12-02.md); it stays off until this says it wins on both.
# Poll without gaps over 30 s, and tar $R in every poll call. STACKS=1 only to chase a hang (lib.sh).
#   setsid nohup bash benchmarks/device_jobs/h100-next.sh /tmp/job > /tmp/job.out 2>&1 &   then poll /tmp/job/progress
R=${1:-/tmp/job}
mkdir -p "$R"
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1
for arch in llama2-7b llama3-8b; do
    step "levers-$arch" 540 python benchmarks/levers.py "$arch" --rows 5,9 --steps 30 --out "$R/levers-$arch-9.md"
done
echo "== $(date +%T) all done" >> "$R/progress"
