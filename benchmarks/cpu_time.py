"""Training time on this machine's CPU: the user's path measured, beside what `lorapilot estimate` says.

    python benchmarks/cpu_time.py [--cases demo,demo-accum,llama-85m] [--repeats 3] [--work DIR] [--out FILE]
    python benchmarks/cpu_time.py --retable DIR [--out FILE]     (the saved runs again, against today's estimate;
                                                                  DIR/runs.json, e.g. benchmarks/results/cpu_time-*/)

Each case is `lorapilot train CONFIG --run-dir DIR` through the real CLI (a subprocess, as a user runs it), a few
times, one after the other, and `lorapilot estimate CONFIG --json` once:
  demo        presets/demo.yaml as shipped (4 layers, one micro-batch of ~250 tokens a step, evaluation, samples
              and checkpoints on): what a newcomer runs first
  demo-accum  the demo with micro_batch_size 2 and gradient_accumulation_steps 4: the same examples a step in
              more micro-batches (the per-micro-batch cost apart from the per-step one)
  llama-85m   a Llama-architecture model with random weights (12 layers, hidden 768, 85M parameters in its
              linear layers) and the demo's tokenizer, on the demo's data, no evaluation: FLOPs dominate its step

From each run: status.json polled while it runs (when the trainer's state turns `training`: on_train_begin, after
loading the data and the model) and its metrics.jsonl:
  start-up    CLI launch to the start of training (imports, data, model), not in the estimate ("of training")
  first       start of training to step 1's record: a step plus the warm-up
  step        median seconds a step over the logged intervals after step 1, leaving out every interval in which
              an evaluation, samples, a checkpoint or a finding was written
  warm-up     first - step: the first step's extra cost
  training    first + (steps - 1) x step: what the estimate's "of training" stands for
  wall        CLI launch to exit (evaluations, samples, checkpoints and start-up included)
Medians over the repeats; ratio = measured training / estimated. The implied constants at the end are solved from
the medians: the demo's step is micro-batch cost plus a few MFLOPs, the large model's is mostly FLOPs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.throughput import _versions, save_random_model, write_out  # noqa: E402

DEMO = REPO / "presets" / "demo.yaml"
LARGE = dict(model_type="llama", hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
             num_attention_heads=12, num_key_value_heads=12, max_position_embeddings=1024,
             tie_word_embeddings=False)
LARGE_STEPS = 12
CASES = ("demo", "demo-accum", "llama-85m")
QUIET_OTHERS = 0.3          # cores other processes kept busy, on average, during a step that counts as quiet
NOT_TRAINING = ("eval", "sample", "event", "finding")   # records whose work falls inside a step interval


# ----------------------------------------------------------------- configs
def demo_raw() -> dict:
    import yaml

    raw = yaml.safe_load(DEMO.read_text())
    raw["dataset"]["path"] = str(DEMO.parent / raw["dataset"]["path"])
    return raw


def large_model(work: Path) -> Path:
    """Random weights of LARGE with the demo model's tokenizer (its vocabulary, specials and chat template)."""
    from engine.demo.model import ensure_demo_model
    from engine.model import load_tokenizer

    out = work / "llama-85m"
    if (out / "config.json").exists():
        return out
    tok = load_tokenizer(str(ensure_demo_model()))
    save_random_model(dict(LARGE, vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                           pad_token_id=tok.pad_token_id), out)
    tok.save_pretrained(out)
    return out


def write_config(case: str, work: Path) -> Path:
    import yaml

    raw = demo_raw()
    if case == "demo":
        return DEMO
    if case == "demo-accum":
        raw["training"].update(micro_batch_size=2, gradient_accumulation_steps=4)
    elif case == "llama-85m":
        raw["model"] = str(large_model(work))
        raw["dataset"]["validation_split"] = 0.0
        raw["training"].update(max_steps=LARGE_STEPS, logging_steps=1, save_steps=1000, sample_max_new_tokens=0)
    else:
        raise SystemExit(f"unknown case {case!r}: one of {', '.join(CASES)}")
    path = work / f"{case}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# ----------------------------------------------------------------- one run, through the CLI
def cli(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "tui.entry", *args], cwd=REPO, env=env, **kw)


def cpu_sample(pids: list[int]) -> tuple[float, float, float]:
    """(time, CPU seconds this machine has been busy, CPU seconds of this process, the CLI and its trainer)."""
    import psutil

    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")   # all but idle and iowait
    own = 0.0
    for pid in [os.getpid(), *pids]:
        try:
            t = psutil.Process(pid).cpu_times()
            own += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return time.time(), busy, own


def train_once(cfg: Path, run_dir: Path, log: Path) -> dict:
    """Launches `lorapilot train`, polls status.json for the start of training and samples the machine's CPU
    (for the cores other processes kept busy, engine_cpu's taken off) until it exits."""
    shutil.rmtree(run_dir, ignore_errors=True)
    load_before = os.getloadavg()[0]
    t0 = time.time()
    samples = []
    with open(log, "w") as out:
        proc = cli("train", str(cfg), "--run-dir", str(run_dir), stdout=out, stderr=subprocess.STDOUT)
        train_begin, trainer = None, None
        while proc.poll() is None:
            if train_begin is None:
                try:
                    st = json.loads((run_dir / "status.json").read_text())
                    trainer = st.get("pid", trainer)
                    if st.get("state") == "training":
                        train_begin = st["updated"]       # written by on_train_begin, before the first step
                except (OSError, ValueError, KeyError):
                    pass
            samples.append(cpu_sample([proc.pid] + ([trainer] if trainer else [])))
            time.sleep(0.05)
    return {"rc": proc.returncode, "launched": t0, "exited": time.time(), "train_begin": train_begin,
            "samples": samples, "load_before": load_before, "load_after": os.getloadavg()[0], "run_dir": str(run_dir),
            "records": [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]}


def others_between(samples: list, start: float, end: float) -> float:
    """Cores other processes kept busy, on average, over the samples spanning [start, end]."""
    before = max((x for x in samples if x[0] <= start), default=samples[0], key=lambda x: x[0])
    after = min((x for x in samples if x[0] >= end), default=samples[-1], key=lambda x: x[0])
    span = after[0] - before[0]
    return max(0.0, (after[1] - before[1]) - (after[2] - before[2])) / span if span > 0 else 0.0


def measure(run: dict) -> dict:
    """The run's start-up, first step, steps, warm-up and training time (see the module's docstring); each step
    interval and the first step with the cores other processes kept busy meanwhile."""
    recs, samples = run["records"], run["samples"]
    train = [r for r in recs if r["kind"] == "train"]
    other = [r["time"] for r in recs if r["kind"] in NOT_TRAINING and r.get("step", 0) > 0]
    intervals = [((b["time"] - a["time"]) / (b["step"] - a["step"]), others_between(samples, a["time"], b["time"]))
                 for a, b in zip(train, train[1:])
                 if b["step"] > a["step"] and not any(a["time"] < t <= b["time"] for t in other)]
    step1 = next(r["time"] for r in train if r["step"] == 1)
    return {"startup": run["train_begin"] - run["launched"], "first": step1 - run["train_begin"],
            "first_others": others_between(samples, run["train_begin"], step1), "intervals": intervals,
            "wall": run["exited"] - run["launched"], "steps": train[-1]["step"],
            "others": others_between(samples, run["launched"], run["exited"]),
            "load": (run["load_before"], run["load_after"])}


def estimate(cfg: Path) -> dict:
    proc = cli("estimate", str(cfg), "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"lorapilot estimate {cfg} failed:\n{err}")
    return json.loads(out)


# ----------------------------------------------------------------- the table
def median_or_none(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summary(runs: list[dict], est: dict) -> dict:
    """A case's medians, over every run and over the quiet moments only (other processes below QUIET_OTHERS
    cores): its steps' intervals pooled over the runs, its first steps run by run."""
    # The estimate's time holds the start-up and the evaluations, samples and saves (engine.estimate.timing): the
    # steps' part is compared with the steps measured, the whole with the wall time.
    training_est = est["time_s"] - est.get("startup_s", 0.0) - est.get("pauses_s", 0.0)
    out = {"runs": len(runs), "steps": runs[0]["steps"], "estimate": training_est, "estimate_whole": est["time_s"],
           "startup": statistics.median(r["startup"] for r in runs),
           "wall": statistics.median(r["wall"] for r in runs),
           "others": statistics.median(r["others"] for r in runs)}
    for which, keep in (("all", lambda o: True), ("quiet", lambda o: o < QUIET_OTHERS)):
        steps = [t for r in runs for t, o in r["intervals"] if keep(o)]
        firsts = [r["first"] for r in runs if keep(r["first_others"])]
        step, first = median_or_none(steps), median_or_none(firsts)
        training = None if step is None or first is None else first + (out["steps"] - 1) * step
        out[which] = {"intervals": len(steps), "first_runs": len(firsts), "step": step, "first": first,
                      "warmup": None if step is None or first is None else first - step, "training": training,
                      "ratio": None if training is None else training / training_est}
    return out


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def table(results: dict[str, dict]) -> str:
    head = ("| case | moments | runs (first steps) | intervals | micro-batches a step | GFLOP a step | first s | "
            "warm-up s | s a step | training s | estimate s | measured / estimate |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for case, r in results.items():
        plan, sm = r["estimate"]["plan"], r["summary"]
        for which in ("quiet", "all"):
            m = sm[which]
            lines.append(
                f"| {case} | {which} | {sm['runs']} ({m['first_runs']}) | {m['intervals']} | "
                f"{plan['micro_batches'] / plan['max_steps']:g} | "
                f"{r['estimate']['train_flops'] / plan['max_steps'] / 1e9:.2f} | {fmt(m['first'])} | "
                f"{fmt(m['warmup'])} | {fmt(m['step'], '.3f')} | {fmt(m['training'], '.1f')} | "
                f"{sm['estimate']:.1f} | {fmt(m['ratio'])} |")
    lines += ["", f"quiet: the step intervals (and first steps) during which other processes kept fewer than "
              f"{QUIET_OTHERS} cores busy on average; all: every one. Step intervals leave out those holding an "
              "evaluation, samples, a checkpoint or a finding. training = first + (steps - 1) x s a step.", "",
              "| case | steps | start-up s | wall s | other processes' cores (whole run) | estimate s (whole run) |",
              "|---|---|---|---|---|---|"]
    for case, r in results.items():
        sm = r["summary"]
        lines.append(f"| {case} | {sm['steps']} | {sm['startup']:.1f} | {sm['wall']:.1f} | {sm['others']:.2f} | "
                     f"{sm['estimate_whole']:.1f} |")
    lines += ["", "Each run (start-up s; first step s with other processes' cores; median s a step over its quiet "
              "intervals / all; other processes' cores over the run; 1-min load average before -> after):", ""]
    for case, r in results.items():
        for m in r["measured"]:
            q = [t for t, o in m["intervals"] if o < QUIET_OTHERS]
            lines.append(f"- {case}: {m['startup']:.1f}; {m['first']:.2f} ({m['first_others']:.2f}); "
                         f"{fmt(median_or_none(q), '.3f')} ({len(q)}) / "
                         f"{statistics.median(t for t, _ in m['intervals']):.3f} ({len(m['intervals'])}); "
                         f"{m['others']:.2f}; load {m['load'][0]:.2f} -> {m['load'][1]:.2f}")
    lines += ["", implied(results)]
    return "\n".join(lines)


def implied(results: dict[str, dict]) -> str:
    """The CPU model's constants solved from the quiet medians (engine.estimate.timing.cpu_seconds: a step's fixed
    cost, a micro-batch's, the FLOPs at a per-core rate): three cases, three unknowns. The demo and the demo in more
    micro-batches a step share their FLOPs: the difference is the micro-batches'; the large model's step is mostly
    FLOPs."""
    import numpy as np

    from engine.estimate.timing import cpu_cores

    cases = ("demo", "demo-accum", "llama-85m")
    if any(c not in results for c in cases):
        return f"(implied constants need the {', '.join(cases)} cases)"
    cores = cpu_cores()
    rows, steps = [], []
    for case in cases:
        r = results[case]
        plan = r["estimate"]["plan"]
        if r["summary"]["quiet"]["step"] is None:
            return f"(no quiet intervals for {case}: run again on a quieter machine)"
        # s = step + micro-batches x c + flops / (cores x g)
        rows.append([1.0, plan["micro_batches"] / plan["max_steps"], r["estimate"]["train_flops"] / plan["max_steps"]])
        steps.append(r["summary"]["quiet"]["step"])
    step, micro, inv_rate = np.linalg.solve(np.array(rows), np.array(steps))
    return (f"Implied by the quiet medians on this machine ({cores} cores): {1 / inv_rate / cores / 1e9:.1f} GFLOP/s "
            f"a core, {step:.3f} s a step, {micro:.3f} s a micro-batch; first-step warm-up (quiet) " + "; ".join(
                f"{case} {fmt(r['summary']['quiet']['warmup'])} s" for case, r in results.items()) + ".")


def machine_text(load_before: tuple, load_after: tuple) -> str:
    from engine.estimate.timing import cpu_cores

    model = next((x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines()
                  if x.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    return (f"Machine: {model}, {cpu_cores()} cores usable (os.cpu_count {os.cpu_count()}), {platform.platform()}; "
            f"load average (1, 5, 15 min) before {', '.join(f'{x:.2f}' for x in load_before)}, after "
            f"{', '.join(f'{x:.2f}' for x in load_after)}. Python {platform.python_version()}, {_versions()}.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", default="/tmp/lorapilot-cpu-time")
    ap.add_argument("--retable", help="a --work directory of an earlier run: its runs against today's estimate")
    ap.add_argument("--out", help="also write the table (markdown) here")
    args = ap.parse_args()

    work = Path(args.retable or args.work)
    work.mkdir(parents=True, exist_ok=True)
    saved = work / "runs.json"
    if args.retable:
        state = json.loads(saved.read_text())
    else:
        state = {"load_before": os.getloadavg(), "runs": {}}
        configs = {case: write_config(case, work) for case in args.cases.split(",")}
        for i in range(args.repeats):              # round robin: a busy spell falls on every case alike
            for case, cfg in configs.items():
                run = train_once(cfg, work / f"{case}-run{i}", work / f"{case}-run{i}.log")
                if run["rc"] != 0:
                    raise SystemExit(f"{case} run {i} failed (rc {run['rc']}): see {work / f'{case}-run{i}.log'}")
                m = measure(run)
                state["runs"].setdefault(case, {"config": str(cfg), "runs": []})["runs"].append(m)
                state["load_after"] = os.getloadavg()
                saved.write_text(json.dumps(state, indent=1))      # a run cut short keeps what it measured
                print(f"{case} run {i}: first {m['first']:.2f} s, steps {[round(t, 2) for t, _ in m['intervals']]}, "
                      f"others {[round(o, 2) for _, o in m['intervals']]}", flush=True)
    results = {}
    for case, r in state["runs"].items():
        cfg = Path(r["config"])
        est = estimate(cfg if cfg.exists() else write_config(case, work))   # --retable elsewhere: built again
        results[case] = {"measured": r["runs"], "estimate": est, "summary": summary(r["runs"], est)}
    text = (f"# Training time on the CPU: `lorapilot train` measured vs `lorapilot estimate` "
            f"({datetime.date.today()})\n\n{machine_text(state['load_before'], state['load_after'])}\n\n"
            f"`python benchmarks/cpu_time.py` (see its docstring for what each column measures).\n\n"
            f"{table(results)}\n")
    write_out(text, args.out)


if __name__ == "__main__":
    main()
