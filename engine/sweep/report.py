"""The sweep's result: each trial's numbers from its metrics, the table, the winner, the heatmap, --apply."""

from __future__ import annotations

import contextlib
import math
import statistics
from pathlib import Path

from engine.diagnose.curves import EvalPoint, learning_curve_verdict
from engine.errors import UserError, shell_word
from engine.rundir import LaunchStart, finite, loss_text, number_text, record_number
from engine.sweep.plan import STOP_ON, lr_text
from engine.sweep.sweepdir import BASE_CONFIG_FILE, SWEEP_FILE, TRIAL_SKIPPED

# Training loss "at" an evaluation: the mean of the last few logged losses, as the live diagnostics take it.
TRAIN_WINDOW = 3


def trial_metrics(records: list[dict]) -> dict:
    """A trial's numbers from its metrics records: eval and train loss, gap, verdict, speed (the median tokens/s,
    each launch's first record left out, as the monitor leaves it out: engine.rundir.LaunchStart), memory."""
    evals: list[EvalPoint] = []
    recent: list[float] = []
    losses: list[float] = []
    speeds: list[float] = []
    peak = None
    errors: list[str] = []
    launch = LaunchStart()
    for rec in records:
        kind = rec.get("kind")
        warming_up = launch.first(rec)   # its tokens/s covers the warm-up and compile: the monitor's one rule
        loss, eval_loss = record_number(rec, "loss"), record_number(rec, "eval_loss")
        if kind == "train" and loss is not None:
            losses.append(loss)
            if finite(loss):
                recent = (recent + [loss])[-TRAIN_WINDOW:]
            if finite(rec.get("tokens_per_s")) and not warming_up:
                speeds.append(rec["tokens_per_s"])
            # The allocator's peak only: nvidia-smi's used memory (gpu_mem_gib, all an older run recorded) counts the
            # CUDA context and the cache too, another kind of number that a column of peaks must not hold.
            mem = rec.get("gpu_peak_alloc_gib")
            if isinstance(mem, list) and any(finite(m) for m in mem):
                peak = max([m for m in mem if finite(m)] + ([peak] if peak is not None else []))
        elif kind == "eval" and eval_loss is not None:
            evals.append(EvalPoint(int(rec.get("step") or 0), eval_loss,
                                   statistics.fmean(recent) if recent else None))
        elif kind == "finding" and rec.get("severity") == "error" and rec.get("code"):
            errors.append(rec["code"])
    finite_evals = [e for e in evals if finite(e.eval_loss)]
    last = evals[-1] if evals else None
    train_loss = statistics.fmean(recent) if recent else None
    return {
        "eval_loss": last.eval_loss if last else None,
        "eval_step": last.step if last else None,
        "best_eval_loss": min(e.eval_loss for e in finite_evals) if finite_evals else None,
        "train_loss": train_loss,
        "gap": (last.eval_loss - last.train_loss) if last and last.train_loss is not None else None,
        "verdict": _verdict(evals, finite_evals, losses),
        "tokens_per_s": statistics.median(speeds) if speeds else None,
        "peak_mem_gib": peak,
        "evals": [[e.step, e.eval_loss] for e in evals],
        "losses": losses,
        "error_findings": sorted(set(errors)),
        # the last step the records reach: status.json, written every few seconds, lags it on fast trials
        "step": max((int(r.get("step") or 0) for r in records if r.get("kind") in ("train", "eval")), default=0),
    }


# A trial whose training loss fell less than this (relative) taught too little to call it fit or not.
MIN_LOSS_DROP = 0.05
TOO_SHORT = "too short to judge"


def _verdict(evals: list, finite_evals: list, losses: list[float]) -> str | None:
    if len(finite_evals) != len(evals):
        return "diverged"
    first, last = (next((x for x in seq if finite(x)), None) for seq in (losses, reversed(losses)))
    if len(finite_evals) >= 2 and first and last is not None and (first - last) < MIN_LOSS_DROP * first:
        # A 6-step trial whose loss barely moved is not "well-fit": it has not started.
        return TOO_SHORT
    return learning_curve_verdict(finite_evals)


RESULT_KEYS = ("eval_loss", "eval_step", "best_eval_loss", "train_loss", "gap", "verdict", "tokens_per_s",
               "peak_mem_gib", "evals", "error_findings")


def diverged(t: dict) -> bool:
    """A trial whose loss went non-finite or exploded: stopped on nan_loss / loss_explosion, such a finding in its
    records, or an evaluation that was not a number. It never wins, whatever an evaluation before it said."""
    return (t.get("stopped_by") in STOP_ON or bool(set(t.get("error_findings") or ()) & set(STOP_ON))
            or t.get("verdict") == "diverged")


def _eval_step(t: dict):
    """The step of a trial's latest evaluation (its eval_loss); a record without one: the trial's step."""
    return t["eval_step"] if t.get("eval_step") is not None else t.get("step")


# A tie in eval loss goes to the cheaper trial: the smaller r (less memory, less time), then the lower lr.
TIE_RULE = "the smaller r, then the lower lr"


def rank_key(t: dict) -> tuple:
    """The order trials are ranked in (the winner, the monitor's best so far): the eval loss as a number (two that
    read the same in loss_text are not tied), then TIE_RULE."""
    return (t["eval_loss"], t["r"], t["learning_rate"])


def choose_winner(trials: list[dict]) -> dict | None:
    """The trial with the lowest eval loss among those evaluated at the same step: the finished trials, at their last
    step; without one, the trials evaluated at the latest step any was (a trial halving stopped earlier is not
    compared with one that trained on). A trial that diverged never wins; a tie goes by TIE_RULE and is said
    ("tied": the others' ids)."""
    def ok(t):
        return finite(t.get("eval_loss")) and not diverged(t)
    done = [t for t in trials if t.get("state") == "done" and ok(t)]
    candidates = done or [t for t in trials if ok(t)]
    if not candidates:
        return None
    steps = [s for s in (_eval_step(t) for t in candidates) if isinstance(s, int)]
    at = max(steps) if steps else None
    pool = [t for t in candidates if at is None or _eval_step(t) == at]
    pool.sort(key=rank_key)
    best = pool[0]
    return {"id": best["id"], "learning_rate": best["learning_rate"], "r": best["r"], "alpha": best["alpha"],
            "eval_loss": best["eval_loss"], "step": at, "run_dir": best.get("run_dir"), "finished": bool(done),
            "tied": [t["id"] for t in pool[1:] if t["eval_loss"] == best["eval_loss"]]}


def table_rows(sweep: dict) -> list[dict]:
    """One row per trial, in grid order (learning rate, then r)."""
    winner = (sweep.get("winner") or {}).get("id")
    rows = []
    for t in sorted(sweep["trials"], key=lambda t: (t["learning_rate"], t["r"])):
        rows.append({"id": t["id"], "learning_rate": t["learning_rate"], "r": t["r"], "state": t.get("state"),
                     "stopped_by": t.get("stopped_by"), "step": t.get("step"),
                     **{k: t.get(k) for k in ("eval_loss", "train_loss", "gap", "verdict", "tokens_per_s",
                                              "peak_mem_gib")},
                     "winner": t["id"] == winner})
    return rows


def _informative(t: dict) -> bool:
    """A trial that says something of its lr and r: it reached an evaluation or diverged (a trial that never
    started, or failed before its first evaluation, does not)."""
    return t.get("eval_loss") is not None or t.get("stopped_by") in STOP_ON


def _lr_list(values) -> str:
    """The lr values a next sweep is given, to two significant digits (5e-4 x 2.5: 1.3e-3, not 1.25e-3)."""
    return ",".join(lr_text(float(f"{x:.1e}")) for x in values)


def edge_notes(sweep: dict) -> list[str]:
    """Plain words when the winner sits at the edge of what was tried: the best lr the highest (or the lowest) of
    the trials that say something, the best r the largest; each with the grid to sweep next, continuing the grid's
    own spacing there. [] without a winner, or when that value was the only one tried. Reads a sweep.json or a
    summarize_sweep() picture alike (both have "winner" and "trials")."""
    from engine.config import FIELDS

    w = sweep.get("winner")
    if not w:
        return []
    tried = [t for t in sweep["trials"] if _informative(t)]
    lrs = sorted({t["learning_rate"] for t in tried} | {w["learning_rate"]})
    rs = sorted({t["r"] for t in tried} | {w["r"]})
    notes = []
    lr, lr_max = w["learning_rate"], FIELDS["training.learning_rate"].hi or math.inf
    if len(lrs) > 1 and lr == lrs[-1]:
        k = lrs[-1] / lrs[-2]
        up = [x for x in (lr, lr * k, lr * k * k) if x <= lr_max]
        notes.append(f"the best lr, {lr_text(lr)}, was the highest tried: the optimum may be above it"
                     + (f"; sweep again with --lr {_lr_list(up)}" if len(up) > 1 else ""))
    elif len(lrs) > 1 and lr == lrs[0]:
        k = lrs[1] / lrs[0]
        notes.append(f"the best lr, {lr_text(lr)}, was the lowest tried: the optimum may be below it; sweep again "
                     f"with --lr {_lr_list((lr / k / k, lr / k, lr))}")
    r, r_max = w["r"], FIELDS["lora.r"].hi or math.inf
    if len(rs) > 1 and r == rs[-1]:
        up_r = [x for x in (r, 2 * r, 4 * r) if x <= r_max]
        notes.append(f"the best r, {r}, was the largest tried: a larger r may do better (at more memory and time)"
                     + (f"; sweep again with --r {','.join(str(x) for x in up_r)}" if len(up_r) > 1 else ""))
    return notes


# ---------------------------------------------------------------- terminal rendering (rich)

def _outcome(t: dict) -> str:
    return t.get("stopped_by") or t.get("state") or "-"


# Below this width the table drops its least-read columns (the key values, lr, r and eval loss, never).
WIDE = 100
NARROW_DROPS = ("train avg", "tok/s", "peak GiB")


def render_table(sweep: dict, width: int = WIDE):
    from rich import box
    from rich.table import Table

    table = Table(title="Sweep trials (★ winner)", title_justify="left", box=box.SIMPLE_HEAD)
    names = ("lr", "r", "outcome", "step", "eval loss", "train avg", "gap", "curve", "tok/s", "peak GiB")
    shown = [n for n in names if width >= WIDE or n not in NARROW_DROPS]
    for name in shown:
        # lr and r are what a user copies out of the table: wide enough never to be cut.
        table.add_column(name, justify="left" if name in ("outcome", "curve") else "right", no_wrap=True,
                         min_width={"lr": 8, "r": 3, "eval loss": 9}.get(name))
    for row in table_rows(sweep):
        t = next(x for x in sweep["trials"] if x["id"] == row["id"])
        style = "bold green" if row["winner"] else ("dim" if row["stopped_by"] or row["state"] != "done" else None)
        cells = dict(zip(names, (
            ("★ " if row["winner"] else "") + lr_text(row["learning_rate"]), str(row["r"]), _outcome(t),
            str(row["step"] or 0), loss_text(row["eval_loss"]), loss_text(row["train_loss"]), number_text(row["gap"], "+.3f"),
            row["verdict"] or "-", number_text(row["tokens_per_s"], ",.0f"), number_text(row["peak_mem_gib"], ".1f"))))
        table.add_row(*(cells[n] for n in shown), style=style)
    return table


def _heat(value: float, lo: float, hi: float) -> str:
    """Green (best) through yellow to red (worst)."""
    x = 0.0 if hi <= lo else (value - lo) / (hi - lo)
    red, green = (int(255 * min(1.0, 2 * x)), int(255 * min(1.0, 2 * (1 - x))))
    return f"black on rgb({red},{green},60)"


HEATMAP_LEGEND = "★ winner, † stopped early, · no eval"


def render_heatmap(sweep: dict):
    """Eval loss over lr (rows) x r (columns); the winner starred, stopped trials marked; the legend below."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    lrs = sorted({t["learning_rate"] for t in sweep["trials"]})
    rs = sorted({t["r"] for t in sweep["trials"]})
    cell = {(t["learning_rate"], t["r"]): t for t in sweep["trials"]}
    values = [t["eval_loss"] for t in sweep["trials"] if finite(t.get("eval_loss")) and not diverged(t)]
    lo, hi = (min(values), max(values)) if values else (0.0, 0.0)
    winner = (sweep.get("winner") or {}).get("id")
    table = Table(title="Eval loss, lr x r", title_justify="left", show_lines=True)
    table.add_column("lr \\ r", justify="right")
    for r in rs:
        table.add_column(f"r {r}", justify="center", min_width=9)
    for lr in lrs:
        cells = []
        for r in rs:
            t = cell.get((lr, r))
            if t is None or not finite(t.get("eval_loss")) or diverged(t):
                # a trial that diverged: never coloured as a good loss by an evaluation before it
                mark = "✗ nan" if t and diverged(t) else "·"
                cells.append(Text(mark, style="dim"))
                continue
            text = loss_text(t["eval_loss"]) + (" ★" if t["id"] == winner else " †" if t.get("stopped_by") else "")
            cells.append(Text(text, style=_heat(t["eval_loss"], lo, hi)))
        table.add_row(lr_text(lr), *cells)
    # The legend under the grid, not its caption: a caption wraps at the grid's width (22 columns for one r).
    return Group(table, Text(HEATMAP_LEGEND))


def render_stops(sweep: dict) -> list[str]:
    """One line per trial that stopped early or did not run, and why."""
    def why(t: dict) -> str:   # a finding's reason starts with its code: said once ("nan_loss: The training ...")
        reason = t.get("stop_reason") or ""
        return reason if reason.startswith(f"{t['stopped_by']}:") else f"{t['stopped_by']}: {reason}".rstrip(": ")
    return [f"{t['id']}: {why(t)}" for t in sweep["trials"] if t.get("stopped_by")]


NO_WINNER = "no trial reached an evaluation without diverging"


def unfinished_text(w: dict) -> str:
    """What a winner no trial finished is: the best of the stopped trials at one step (choose_winner's)."""
    return "no trial finished: best of the stopped ones" + (f" evaluated at step {w['step']}" if w.get("step") else "")


def print_report(sweep: dict, console=None) -> None:
    from rich.console import Console

    if console is None:
        console = Console()
        if not console.is_terminal:  # a log file or a pipe: no 80-column cut
            console = Console(width=120)
    console.print(render_table(sweep, console.width))
    console.print(render_heatmap(sweep))
    for line in render_stops(sweep):
        console.print(f"  {line}", markup=False, highlight=False)
    w = sweep.get("winner")
    if w:
        note = "" if w.get("finished") else f" ({unfinished_text(w)})"
        ran = sum(t.get("state") != TRIAL_SKIPPED for t in sweep["trials"])
        if ran < len(sweep["trials"]):   # a sweep stopped (or cut by the budget) early: a winner of fewer
            note += (f" (of the {ran} trial{'s' if ran != 1 else ''} that ran; {len(sweep['trials']) - ran} "
                     "never started)")
        console.print(f"winner: lr {lr_text(w['learning_rate'])}, r {w['r']} (alpha {w['alpha']}), "
                      f"eval loss {loss_text(w['eval_loss'])}{note}", markup=False, highlight=False)
        for line in winner_notes(sweep):
            console.print(f"  note: {line}", markup=False, highlight=False)
    else:
        console.print(f"no winner: {NO_WINNER}", markup=False)


# ---------------------------------------------------------------- --apply

def winner_config(sweep: dict):
    """The base config with the winner's lr, r and alpha = 2r; the sweep's own overrides never were in it."""
    from engine.config import config_from_dict

    w = sweep.get("winner")
    if not w:
        raise UserError(f"{sweep.get('sweep_dir', 'the sweep')}: no winner yet (state {sweep.get('state')})",
                        fix="wait for the sweep to finish (`lorapilot sweep SWEEP_DIR` shows it)")
    raw = dict(sweep["base_config"])
    raw["lora"] = {**raw["lora"], "r": w["r"], "alpha": w["alpha"]}
    raw["training"] = {**raw["training"], "learning_rate": w["learning_rate"]}
    raw["run_name"] = None
    return config_from_dict(raw, source=f"{sweep.get('sweep_dir')}/{SWEEP_FILE} base_config")


def batch_notes(sweep: dict) -> list[str]:
    """The winner's config trained alone on the sweep's machine is not the trial it won as, where that machine has
    several GPUs: every trial trained on one (training.num_gpus 1), the config trains on all of them (data parallel),
    each optimizer step N times the examples and an epoch N times fewer steps, where the best lr may differ."""
    t = sweep["base_config"]["training"]
    gpus = len(sweep.get("devices") or [])
    n = min(t.get("num_gpus") or gpus, gpus)
    if n <= 1:
        return []
    per = t["micro_batch_size"] * t["gradient_accumulation_steps"]
    accum = t["gradient_accumulation_steps"]
    same = "training.num_gpus: 1" + (f", or training.gradient_accumulation_steps: {accum // n} ({per} examples a step "
                                      f"over the {n} GPUs)" if accum % n == 0 else "")
    return [f"the trials trained on one GPU each, {per} examples an optimizer step; on the sweep machine's {n} GPUs "
            f"this config trains {n} x {per} = {n * per} a step (and {n} times fewer steps an epoch), where the best "
            f"lr may differ; to train as the trials did, set {same}"]


def winner_notes(sweep: dict) -> list[str]:
    """Everything to know about the winner before training its config, one list for every surface (the report,
    --apply's message and the file's header, the sweep monitor's winner panel): tied with others (tie_notes), at the
    grid's edge (edge_notes), on more GPUs than its trial (batch_notes). Reads a sweep.json or a summarize_sweep() picture alike."""
    return tie_notes(sweep) + edge_notes(sweep) + batch_notes(sweep)


def tie_notes(sweep: dict) -> list[str]:
    """The trials whose eval loss equals the winner's, and the rule that chose among them (TIE_RULE)."""
    w = sweep.get("winner") or {}
    by_id = {t["id"]: t for t in sweep["trials"]}
    tied = [by_id[i] for i in w.get("tied") or [] if i in by_id]   # in the rule's order
    if not tied:
        return []
    others = "; ".join(f"lr {lr_text(t['learning_rate'])}, r {t['r']}" for t in tied)
    return [f"tied at eval loss {loss_text(w['eval_loss'])} with {others}: {TIE_RULE} won"]


def applied_text(sweep: dict, path: str | Path, *, notes: bool = True) -> str:
    """What `--apply` says once the winner's config is written: where, the notes on the winner (winner_notes;
    `notes`: unless the report above just said them), and the command to train it."""
    lines = [f"winner's config written to {path}"]
    lines += [f"  note: {line}" for line in (winner_notes(sweep) if notes else [])]
    return "\n".join(lines + [f"train it: lorapilot train {shell_word(path)}"])


def apply_winner(sweep: dict, out: str | Path, *, replace: bool = False) -> Path:
    """Writes the winner's config to OUT (YAML), ready for `lorapilot train OUT`; an existing OUT only when
    `replace` (the user said so: --force, yes at the prompt, the dialog's Replace)."""
    cfg = winner_config(sweep)
    w = sweep["winner"]
    path = Path(out)
    if path.is_dir():
        raise UserError(f"--apply {out}: is a directory; give a file name such as best.yaml")
    if path.exists() and not replace:
        raise UserError(f"--apply {out}: exists; not overwritten", fix="choose another file, or add --force to replace it")
    base = sweep.get("base_config_path")
    if not base or not Path(base).is_file():   # the wizard's sweep reads a temporary copy, gone once it started
        base = str(Path(str(sweep.get("sweep_dir"))) / BASE_CONFIG_FILE)
    header = (f"# From sweep {sweep.get('sweep_dir')}: winner lr {lr_text(w['learning_rate'])}, r {w['r']}, "
              f"alpha {w['alpha']} (eval loss {loss_text(w['eval_loss'])}).\n"
              f"# The base config {base} otherwise, with its own steps.\n"
              + "".join(f"# Note: {line}.\n" for line in winner_notes(sweep)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + _config_text(sweep, cfg, path.parent), encoding="utf-8")
    return path


def _config_text(sweep: dict, cfg, folder: Path) -> str:
    """The winner's config as the user wrote its base: the sweep's copy of their file (base_config.yaml) with only
    the keys that differ set (the winner's lr, r and alpha; run_name cleared), its comments and order kept; the
    whole config where that copy is missing or does not load."""
    from engine.config import dump_config, paths_from
    from engine.config_edit import edited_text

    copy = Path(str(sweep.get("sweep_dir"))) / BASE_CONFIG_FILE
    if copy.is_file():
        with contextlib.suppress(UserError):   # ConfigError: an edited or unreadable copy
            return edited_text(copy, cfg, folder)
    return dump_config(paths_from(cfg, folder))
