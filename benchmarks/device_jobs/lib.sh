# Sourced by the device jobs: run one measurement under a time limit, logged to $R/NAME.log, progress in $R/progress.
step() {
    local name=$1 lim=$2
    shift 2
    echo "== $(date +%T) start $name" >> "$R/progress"
    timeout --kill-after=10 "$lim" "$@" > "$R/$name.log" 2>&1
    local rc=$?  # taken at once: the $(date) below resets $? (every step logged rc=0, timeouts included)
    echo "== $(date +%T) end $name rc=$rc" >> "$R/progress"
    pkill -9 -f "engine[.]train[.]run"  # detached trainers of a step that ran out of time
    cp /tmp/lorapilot-bench/lever-*.json "$R/" 2>/dev/null
}

# Every job leaves its processes' Python stacks in $R/stacks (written each minute): a hang is then readable
# afterwards (diag/sitecustomize.py; the Qwen2.5-14B FSDP run's final save hung without them).
mkdir -p "$R/stacks"
export PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/diag:$PYTHONPATH" STACK_DIR="$R/stacks" \
    STACK_EVERY_S=${STACK_EVERY_S:-60}
