"""Checks of the real trainer on a GPU, through the CLI a user runs (`python -m engine.cli train`).

    python benchmarks/gpu_checks.py oom [--arch llama2-7b]       CUDA OOM mid-run: failed + hint; resumed lean to the end
    python benchmarks/gpu_checks.py auto [--arch llama2-7b]      memory auto picks lean where fast does not fit

The model has random weights from the architecture's config numbers with the demo's tokenizer saved
beside it; the data is generated text whose lengths follow the throughput benchmark's distribution
(lognormal, median ~350 tokens). Prints what it found; exits 1 when a check fails. The cost of samples and of
the callback is benchmarks/sample_cost.py.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.throughput import build_model_dir  # noqa: E402

GIANT_TOKENS = 200_000  # one example this long makes its step's micro-batch too big for 80 GB on the fast path
MODELS = "/tmp/lorapilot-bench/models"  # shared with throughput.py: a 7B is built once per machine


def model_with_tokenizer(arch: str, work: Path) -> Path:
    from engine.demo.model import build_tokenizer, demo_data_path

    model_dir = build_model_dir(arch, Path(MODELS))
    if not (model_dir / "tokenizer_config.json").exists():
        build_tokenizer(demo_data_path()).save_pretrained(model_dir)
    return model_dir


def words(rng: random.Random, n: int) -> str:
    vocab = ("the model learns what the data shows, answer step by step with care and a short plan; "
             "tokens loss rate batch adapter rank gradient memory").split()
    return " ".join(rng.choice(vocab) for _ in range(n))


def write_dataset(path: Path, n: int, seed: int = 0, giant_words: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w") as f:
        for i in range(n):
            length = int(min(1500, max(40, rng.lognormvariate(5.6, 0.6))))  # words; ~1.3 tokens each
            prompt = int(length * rng.uniform(0.2, 0.7))
            row = {"instruction": words(rng, prompt), "input": "", "output": words(rng, length - prompt)}
            f.write(json.dumps(row) + "\n")
        if giant_words:
            f.write(json.dumps({"instruction": "summarise", "input": "", "output": words(rng, giant_words)}) + "\n")


def write_config(path: Path, model_dir: Path, data: Path, **training) -> None:
    import yaml

    path.write_text(yaml.safe_dump({"model": str(model_dir), "dataset": {"path": str(data), "validation_split":
                                    training.pop("validation_split", 0.05)}, "training": training}))


def fresh(run: Path) -> Path:
    import shutil
    shutil.rmtree(run, ignore_errors=True)
    return run


def cli(*args: str) -> int:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=REPO).returncode


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _giant_step(cfg, data, steps: int) -> int | None:
    """The optimizer step (1-based) whose micro-batch holds the giant example, as the trainer will plan it."""
    from engine.model import detect_hardware
    from engine.train.run import _plan

    giant = max(range(len(data.train)), key=lambda i: len(data.train[i]))
    t = cfg.training
    _, plan = _plan(cfg, data, detect_hardware(), examples_per_step=t.micro_batch_size * t.gradient_accumulation_steps,
                    num_epochs=1, n_ranks=1)
    for k, step in enumerate(plan.epochs[0][:steps], start=1):
        if any(giant in mb for mb in step):
            return k
    return None


def giant_config(a, name: str, memory: str) -> Path:
    """A config whose giant example lands in step 5 or 6: two checkpoints (2, 4) before it."""
    import yaml

    from engine.config import config_from_dict
    from engine.data import load_examples
    from engine.model import load_tokenizer

    work = Path(a.work)
    model_dir = model_with_tokenizer(a.arch, work)
    data_path = work / "giant.jsonl"
    write_dataset(data_path, 300, giant_words=int(GIANT_TOKENS / 1.3))
    cfg_path = work / f"{name}.yaml"
    data = None
    for seed in range(200):
        write_config(cfg_path, model_dir, data_path, max_seq_length=262_144, max_steps=8, save_steps=2,
                     logging_steps=1, eval_steps=10 ** 6, seed=seed, memory=memory, validation_split=0.0)
        cfg = config_from_dict(yaml.safe_load(cfg_path.read_text()))
        data = data or load_examples(cfg, load_tokenizer(cfg.model))
        if _giant_step(cfg, data, 8) in (5, 6):
            return cfg_path
    raise SystemExit("no seed puts the giant example in step 5 or 6")


def check_oom(a) -> bool:
    cfg = giant_config(a, "oom", "fast")
    runs = Path(a.work) / "runs"
    run = fresh(runs / "oom")
    code = cli("train", str(cfg), "--run-dir", str(run))
    status = json.loads((run / "status.json").read_text())
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("checkpoint-*"))
    print(f"first run: exit {code}, state {status.get('state')}, error {status.get('error')!r}")
    print(f"hint: {status.get('hint')!r}; checkpoints {ckpts}")
    last = max((int(c.split("-")[1]) for c in ckpts), default=0)
    before = [r["step"] for r in metrics(run) if r["kind"] == "train"]
    # What the hint tells the user to do: switch the run to the lean path, then resume it.
    import yaml
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["training"]["memory"] = "lean"
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    code2 = cli("train", "--resume", str(run))
    after = [r["step"] for r in metrics(run) if r["kind"] == "train"][len(before):]
    status2 = json.loads((run / "status.json").read_text())
    print(f"resume with training.memory: lean: exit {code2}, state {status2.get('state')}; steps trained after "
          f"resuming from checkpoint-{last}: {after}")
    return (code == 1 and status.get("state") == "failed" and "out of memory" in (status.get("error") or "").lower()
            and "memory: lean" in (status.get("hint") or "") and last >= 2 and after[:1] == [last + 1]
            and code2 == 0 and status2.get("state") == "done" and after[-1:] == [8])


def check_auto(a) -> bool:
    cfg = giant_config(a, "auto", "auto")
    runs = Path(a.work) / "runs"
    run = fresh(runs / "auto")
    code = cli("train", str(cfg), "--run-dir", str(run))
    log = (run / "train.log").read_text()
    chosen = [line for line in log.splitlines() if "memory:" in line or "activations:" in line]
    train = [r for r in metrics(run) if r["kind"] == "train"]
    peak = max((max(r.get("gpu_peak_alloc_gib", [0])) for r in train), default=0)
    print(f"auto: exit {code}; " + " | ".join(chosen) + f"; {len(train)} steps; peak allocated {peak:.1f} GiB")
    return code == 0 and any("memory: lean" in line for line in chosen) and len(train) == 8


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checks", nargs="+", choices=("oom", "auto"))
    ap.add_argument("--arch", default="llama2-7b")
    ap.add_argument("--work", default="/tmp/lorapilot-checks")
    a = ap.parse_args()
    Path(a.work).mkdir(parents=True, exist_ok=True)
    ok = True
    for name in a.checks:
        print(f"== {name}", flush=True)
        passed = {"oom": check_oom, "auto": check_auto}[name](a)
        print(f"== {name}: {'PASS' if passed else 'FAIL'}", flush=True)
        ok &= passed
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
