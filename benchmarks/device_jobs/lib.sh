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

# STACKS=1 makes every process write its Python stacks to $R/stacks each minute, to read a hang afterwards
# (diag/sitecustomize.py). Off by default: on 2026-12-02 three of four processes on an H200 died with SIGSEGV
# in the middle of a dump (their stack files end mid-line), while their threads ran Python code; faulthandler's
# dump of other running threads is not safe. Turn it on only to chase a hang.
if [ "${STACKS:-0}" = 1 ]; then
    mkdir -p "$R/stacks"
    export PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/diag:$PYTHONPATH" STACK_DIR="$R/stacks" \
        STACK_EVERY_S=${STACK_EVERY_S:-60}
fi
