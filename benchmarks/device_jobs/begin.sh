# Sourced first by the per-call device jobs (h200-s13.sh, h200-s14.sh) with JOB, CALL and OUT set: the call's
# working folder R=/tmp/$JOB/call$CALL, the repository as the working directory, START for the job's deadlines,
# the carried wheels (.whl: what the image lacks; .whl25: transformers 5.25) installed once per machine (a warm
# machine keeps /tmp) and first on PYTHONPATH, and the hubs offline.
R=/tmp/$JOB/call$CALL
mkdir -p "$R" "$OUT"
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
START=$(date +%s)
if [ ! -f /tmp/site25/.done ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site25 \
        .whl25/*.whl && touch /tmp/site25/.done
fi
export PYTHONPATH=/tmp/site25:/tmp/site${PYTHONPATH:+:$PYTHONPATH}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
