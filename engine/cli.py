"""The headless face of the engine: argparse verbs -> engine calls.

Exit codes: 0 success, 1 the run failed, 2 bad input. A UserError is printed
as one clear message naming the culprit, never as a traceback. The wizard and
the monitor are started by the `lorapilot` console script (tui/entry.py);
this module never imports the UI.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import os
import signal
import sys
import textwrap
from pathlib import Path

from engine.errors import (EXIT_BAD_INPUT, EXIT_BROKEN_PIPE, EXIT_OK, EXIT_RUN_FAILED, UserError, print_error, quote,
                           shell_word)
from engine.settings import demo_config_word, user_path


_PATH_ERRNOS = (errno.ENAMETOOLONG, errno.EACCES, errno.EPERM, errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.EROFS)


# Verbs other tools have, and lorapilot's verb that does it.
_MEANT = {"status": "runs", "list": "runs", "ls": "runs", "ps": "runs", "resume": "train --resume RUN_DIR",
          "inspect": "inspect-data", "generate": "chat RUN_DIR", "infer": "chat RUN_DIR", "run": "train CONFIG",
          **dict.fromkeys(("top", "htop", "atop", "btop", "watch"), "monitor RUN_DIR")}
# Verbs never offered for a word that merely looks alike: `top` is a letter from `stop`, which would end a run.
_NEVER_GUESSED = ("stop",)


class _Help(argparse.HelpFormatter):
    """argparse's help, wrapped at spaces only: a name with hyphens (meta-llama/Llama-2-7b-hf, --max-new-tokens)
    stays whole on its line, to be read and copied as it is written."""

    def _split_lines(self, text, width):
        return textwrap.wrap(self._whitespace_matcher.sub(" ", text).strip(), width, break_on_hyphens=False)

    def _fill_text(self, text, width, indent):
        return textwrap.fill(self._whitespace_matcher.sub(" ", text).strip(), width, initial_indent=indent,
                             subsequent_indent=indent, break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage already; keep its message, add our prefix."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)

    def _check_value(self, action, value):
        """A verb or choice not known: the one meant, where it is plain (`trian`: train; `status`: runs), before
        argparse's list of them. Never a guess a letter or two from another word (`status` is not `stop`)."""
        if action.choices is not None and value not in action.choices and isinstance(value, str):
            meant = _MEANT.get(value.lower())
            near = difflib.get_close_matches(value.lower(), [c for c in action.choices if c not in _NEVER_GUESSED],
                                             n=1, cutoff=0.75)
            hint = (f"; did you mean `lorapilot {meant}`?" if meant and meant.split()[0] in action.choices
                    else f"; did you mean {near[0]!r}?" if near else "")
            if hint:
                choices = ", ".join(map(repr, action.choices))
                raise argparse.ArgumentError(action, f"invalid choice: {value!r}{hint} (choose from {choices})")
        super()._check_value(action, value)

    def error(self, message):
        self.print_usage(sys.stderr)
        print_error(message)
        sys.exit(EXIT_BAD_INPUT)


TRUST_HELP = ("run the model folder's own Python code when the run's config.yaml asks for it "
              "(trust_remote_code); never honoured from a run directory without this flag")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lorapilot", description="QLoRA fine-tuning from the terminal. "
                "Without a verb: the wizard (`lorapilot`, or `lorapilot CONFIG.yaml`).")
    sub = p.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)

    t = sub.add_parser("train", help="train from a config (or --resume a run)")
    t.add_argument("config", nargs="?", type=user_path, help="YAML config (see presets/)")
    t.add_argument("--resume", metavar="RUN_DIR", type=user_path, help="continue a run from its last checkpoint")
    t.add_argument("--run-dir", type=user_path, help="run directory to create (default: runs/<name>-<time>)")
    t.add_argument("--max-steps", type=int, help="override training.max_steps")
    t.add_argument("--detach", action="store_true",
                   help="start in the background; returns once the trainer has read and checked the data")
    t.add_argument("--trust-remote-code", action="store_true", help=TRUST_HELP)

    m = sub.add_parser("monitor", help="the live monitor (the app)")
    m.add_argument("run_dir", nargs="?", type=user_path,
                   help="the run (or sweep) folder to watch (default: pick from the runs list)")

    pg = sub.add_parser("playground", help="the app's playground: type a prompt, the base model and the run's "
                        "adapter answer side by side")
    pg.add_argument("run_dir", type=user_path, help="a finished run folder (runs/<name>)")

    r = sub.add_parser("runs", help="list runs with state, step and loss")
    r.add_argument("--root", type=user_path, help="runs root (default: ./runs or $LORAPILOT_RUNS)")
    r.add_argument("--json", action="store_true", help="print the list as JSON, for scripts")
    r.add_argument("--watch", action="store_true",
                   help="keep watching: one line each time a run or sweep changes state (ctrl+c ends)")

    s = sub.add_parser("stop", help="graceful stop: finish the step, checkpoint, exit")
    s.add_argument("run_dir", type=user_path, help="the run folder (runs/<name>)")

    e = sub.add_parser("estimate", help="VRAM, steps and time for a config")
    from engine.estimate.command import add_arguments as add_estimate_arguments
    add_estimate_arguments(e)

    sw = sub.add_parser("sweep", help="short trials over learning rate x LoRA r; keep the best")
    from engine.sweep.command import add_arguments as add_sweep_arguments
    add_sweep_arguments(sw)

    from engine.diagnose import command as diag

    d = sub.add_parser("diagnose", help="training-health findings of a run")
    diag.add_diagnose_arguments(d)
    i = sub.add_parser("inspect-data", help="format, token statistics and problems of a dataset")
    diag.add_inspect_arguments(i)
    pr = sub.add_parser("prepare", help="turn raw HTML/CSV/SQL into a training JSONL")
    diag.add_prepare_arguments(pr)

    c = sub.add_parser("chat", help="the base model and the run's adapter answer side by side")
    c.add_argument("run_dir", type=user_path, help="the run folder whose adapter answers (runs/<name>)")
    c.add_argument("--prompt", help="answer this one prompt and exit (default: a conversation typed in the terminal)")
    c.add_argument("--system", default="", help="the system prompt to ask with (default: the one every training row "
                   "had, else none)")
    c.add_argument("--temperature", default="0", help="0 = greedy (default)")
    c.add_argument("--top-p", default="1", help="sample only from the likeliest tokens whose chances add up to this "
                   "(0-1; 1 = all, default); used when --temperature is above 0")
    c.add_argument("--max-new-tokens", default="128", help="longest answer, in tokens (default 128)")
    c.add_argument("--adapter-only", action="store_true", help="skip the base model's answer")
    c.add_argument("--trust-remote-code", action="store_true", help=TRUST_HELP)

    x = sub.add_parser("export", help="the adapter, the merged model, or a folder for Ollama, vLLM or llama.cpp")
    from engine.export.command import add_arguments as add_export_arguments
    add_export_arguments(x)
    return p


def _cmd_train(a) -> int:
    from engine.config import load_config
    from engine.train.launch import follow, resume_run, start_run

    if a.resume:
        if a.config:
            raise UserError("give either CONFIG or --resume RUN_DIR, not both")
        handle = resume_run(a.resume, trust_remote_code=a.trust_remote_code)
        for note in handle.notes:
            print_error(note)
        from engine.sweep.sweepdir import resume_command

        if (goes_on := resume_command(handle.run_dir)).startswith("lorapilot sweep"):
            print_error(f"{handle.run_dir} is a trial of the sweep {handle.run_dir.parent}: resumed alone, outside its "
                        "sweep, which neither ranks what it trains now nor runs the trials it did not start; "
                        f"{goes_on} goes on with the sweep")
    else:
        if not a.config:
            raise UserError("train needs a CONFIG file (or --resume RUN_DIR)",
                            fix=f"try: lorapilot train {demo_config_word()}")
        cfg = load_config(a.config)
        handle = start_run(cfg, run_dir=a.run_dir, config_name=Path(a.config).stem, max_steps=a.max_steps)
    if a.detach:
        from engine.rundir import FINAL_STATES, read_status
        from engine.train.launch import wait_for_data_checks

        print(f"run directory: {handle.run_dir}", flush=True)
        # The data is read and checked by the trainer (once): a dataset that cannot train is said here, exit 2.
        ended = wait_for_data_checks(handle)
        # Ended meanwhile: failed on its data, or a run so short it finished (or stopped); its end is said, not how
        # to watch a process that is gone. A bare 0 with no end recorded goes on as a started run.
        if ended is not None and (ended or (read_status(handle.run_dir) or {}).get("state") in FINAL_STATES):
            return _report_end(handle.run_dir, ended)
        print(f"pid: {handle.pid}\n"
              f"watch: lorapilot monitor {shell_word(handle.run_dir)}\nstop:  lorapilot stop {shell_word(handle.run_dir)}")
        return EXIT_OK
    from engine.rundir import RunPlace

    print(f"run directory: {handle.run_dir} (pid {handle.pid}); Ctrl-C stops gracefully", flush=True)
    try:   # held open: a run directory moved while it trains is found where it went, and its end read there
        place: RunPlace | None = RunPlace(handle.run_dir)
    except OSError:
        place = None
    run_dir = handle.run_dir
    rc = follow(handle, place=place)
    return _report_end(run_dir, rc, place)


def _report_end(run_dir: Path, rc: int, place=None) -> int:
    """What the run's end was, from its status.json; `place` (rundir.RunPlace): the run directory held since the
    start, so that one moved meanwhile is read where it went (its trainer recorded why it stopped there)."""
    from engine.rundir import read_status, safe_text

    moved = place.moved() if place is not None else None
    if moved is not None:
        if moved.now is None:   # deleted: nothing left to read
            print_error(str(moved))
            return EXIT_RUN_FAILED
        run_dir = moved.now
    st = read_status(run_dir) or {}
    state = st.get("state")
    if state == "done":
        print(f"done: adapter in {run_dir / 'adapter'}")
        return EXIT_OK
    if state == "stopped":
        print(f"stopped at step {st.get('step')}; resume: lorapilot train --resume {shell_word(run_dir)}")
        return EXIT_OK
    if state == "failed":
        fix = f"\n  fix: {safe_text(st['hint'])}" if st.get("hint") else ""
        print_error(f"run failed: {safe_text(st.get('error'))}{fix}\n  log: {run_dir / 'train.log'}")
        # the user's input, as the trainer recorded it: on several GPUs the code is torchrun's 1, not its 2
        return EXIT_BAD_INPUT if rc == EXIT_BAD_INPUT or st.get("user_error") is True else EXIT_RUN_FAILED
    if rc:  # it ended without recording how: killed (the out-of-memory killer's SIGKILL), or before it could write
        how = (f"was killed by signal {-rc}" + (" (SIGKILL: the kernel's out-of-memory killer, or kill -9)"
                                                 if rc == -signal.SIGKILL else "")) if rc < 0 else f"exited with {rc}"
        print_error(safe_text(f"the trainer {how} while {state or 'starting'} at step {st.get('step', 0)}, "
                              "without recording why", one_line=True)
                    + f"\n  log: {run_dir / 'train.log'}\n  fix: lorapilot train --resume {shell_word(run_dir)} continues from its "
                      "last checkpoint")
        return EXIT_BAD_INPUT if rc == EXIT_BAD_INPUT else EXIT_RUN_FAILED
    return rc


def _cmd_runs(a) -> int:
    from engine.rundir import list_runs, safe_text
    from engine.runs_list import collect, format_table, stalled_run, watch_lines

    if a.root and Path(a.root).exists() and not Path(a.root).is_dir():
        raise UserError(f"--root {a.root}: not a directory", fix="give the directory that holds the runs")
    skipped: list[str] = []   # corrupt status.json or sweep.json: that run only is left out, with a warning
    if a.json:
        runs = list_runs(a.root, skipped)
        stalled = {r.path for r in runs if stalled_run(r)}
        from engine.wrap import json_for_scripts

        print(json_for_scripts([{"run_dir": str(r.path), "state": r.state, "step": r.step, "max_steps": r.max_steps,
                           "loss": r.loss, "eval_loss": r.eval_loss, "age_s": r.age_s,
                           "no_progress": r.path in stalled,
                           "copy_of": str(r.copy_of) if r.copy_of else None} for r in runs], indent=1))
        _warn(skipped)
        return EXIT_OK
    if a.watch:
        print(f"watching {a.root or 'runs/'}: one line per state change (ctrl+c ends)", flush=True)
        try:
            for line in watch_lines(a.root, stalled=stalled_run):
                print(safe_text(line, one_line=True), flush=True)
        except KeyboardInterrupt:
            pass
        return EXIT_OK
    rows = collect(a.root, stalled=stalled_run, problems=skipped)
    if not rows:
        from engine.wrap import fit

        print(fit(f"no runs under {a.root or 'runs/'}; start one: lorapilot train {demo_config_word()}"))
    else:
        print(safe_text("\n".join(format_table(rows))))  # names and states come from run directories
    _warn(skipped)
    return EXIT_OK


def _warn(problems: list[str]) -> None:
    for p in problems:
        print_error(f"warning: {p}")


def _cmd_stop(a) -> int:
    from engine.rundir import is_run_dir, not_a_run_dir
    from engine.train.launch import request_stop

    rd = Path(a.run_dir)
    from engine.sweep.sweepdir import is_sweep_dir, request_sweep_stop
    if is_sweep_dir(rd):
        print(f"stop requested: {rd}'s running trials checkpoint and stop" if request_sweep_stop(rd)
              else f"{rd}: the sweep is not running; nothing to stop")
        return EXIT_OK
    if not rd.is_dir() or not is_run_dir(rd):
        raise not_a_run_dir(rd, "not a run or sweep directory (no status.json, metrics.jsonl or sweep.json)")
    if request_stop(rd):
        print(f"stop requested: {rd} will checkpoint after its current step")
        return EXIT_OK
    from engine.rundir import copy_of, effective_state, read_status, safe_text

    status = read_status(rd)
    if effective_state(status, rd) != "lost":
        print(f"{rd}: not running; nothing to stop")
    elif original := copy_of(rd, status):
        print(f"{rd}: not running; nothing to stop (a copy of {original}, which its trainer still trains)")
    else:  # status.json still says training: its trainer was killed, or its machine went down
        from engine.wrap import fit

        print(fit(safe_text(f"{rd}: not running, though status.json says {(status or {}).get('state')} at step "
                            f"{(status or {}).get('step', 0)}: its trainer is gone; nothing to stop", one_line=True)
                  + f"\n  continue it from its last checkpoint: `lorapilot train --resume {shell_word(rd)}`"))
    return EXIT_OK


def _cmd_export(a) -> int:
    from engine.export.command import run

    return run(a)


def _cmd_chat(a) -> int:
    """One prompt (--prompt), or a conversation read line by line: each side (base, adapter) keeps its own
    history, fed as training renders a multi-turn row; `/new` starts a new one. Formats without turns ask each
    prompt alone and say so."""
    from engine.data.prompt import SYSTEM_FORMATS, one_question_only, system_in_use
    from engine.playground import Playground, chat_target, check_sampling, dropped_turns_note, prompt_style
    from engine.rundir import safe_text
    from engine.wrap import fit

    bad = [f"--{name.replace('_', '-')} {msg}" for name in ("temperature", "top_p", "max_new_tokens")
           for _, msg in [check_sampling(name, str(getattr(a, name)))] if msg]
    if bad:
        raise UserError("chat: bad sampling settings", problems=bad)
    # a folder that is no run, a system prompt its rows cannot have: said before "loading"
    cfg, _, adapter_dir = chat_target(a.run_dir, trust_remote_code=a.trust_remote_code)
    system = a.system.strip()
    fmt = prompt_style(adapter_dir, cfg).format
    if system and fmt not in SYSTEM_FORMATS:
        raise UserError(f"--system: {a.run_dir} trained on {fmt} rows, which have no system prompt",
                        fix="leave --system out")
    print("loading the base model and the adapter ...", file=sys.stderr, flush=True)
    from engine.model import quiet_progress_bars
    quiet_progress_bars()
    pg = Playground(a.run_dir, trust_remote_code=a.trust_remote_code)
    kw = {name: check_sampling(name, str(getattr(a, name)))[0] for name in ("temperature", "top_p", "max_new_tokens")}
    if system and pg.system_refused:
        raise UserError(f"--system: {pg.system_refused}", fix="leave --system out, or write it into the prompt")
    in_use = system_in_use(pg.style, system, pg.template_system, pg.system_left_out)
    print(fit("system prompt in use: " + safe_text(in_use, one_line=True)), file=sys.stderr)
    if pg.stops_note:
        print(fit("note: " + safe_text(pg.stops_note, one_line=True)), file=sys.stderr)
    why_alone = one_question_only(pg.style.format)
    histories: dict[bool, list[tuple[str, str]]] = {False: [], True: []}

    def one(prompt: str) -> None:
        for label, adapter in (("base", False), ("adapter", True)):
            if a.adapter_only and not adapter:
                continue

            def dropped(turns: int, label: str = label) -> None:
                print(f"\n({label}: {dropped_turns_note(turns, pg.context, kw['max_new_tokens'])})", file=sys.stderr)
            print(f"[{label}] ", end="", flush=True)
            pieces = []
            for piece in pg.stream(prompt, adapter=adapter, history=histories[adapter], system=system,
                                   dropped=dropped, **kw):
                print(safe_text(piece), end="", flush=True)
                pieces.append(piece)  # fed back as the model wrote it
            print(flush=True)
            if why_alone is None and a.prompt is None:
                histories[adapter].append((prompt, "".join(pieces).strip()))

    if a.prompt is not None:
        one(a.prompt)
        return EXIT_OK
    print(fit("type a prompt and Enter" + (f" ({why_alone}); " if why_alone else "; /new starts a new conversation; ")
              + "Ctrl-D to quit"), file=sys.stderr)
    for line in sys.stdin:
        if line.strip() == "/new":
            for history in histories.values():
                history.clear()
            print("(a new conversation)" if why_alone is None else f"({why_alone})", file=sys.stderr)
        elif line.strip():
            one(line.strip())
    return EXIT_OK


def _cmd_monitor(a) -> int:
    # Reached only when engine.cli is called directly; the console script opens the app itself.
    raise UserError("the monitor is part of the app: run `lorapilot monitor [RUN_DIR]`")


def _cmd_playground(a) -> int:
    # Reached only when engine.cli is called directly; the console script opens the app itself.
    raise UserError("the playground is part of the app: run `lorapilot playground RUN_DIR`")


def main(argv: list[str] | None = None) -> int:
    try:
        rc = _dispatch(argv)
        sys.stdout.flush()   # output still buffered meets a closed pipe here, not at interpreter exit
        return rc
    except BrokenPipeError:
        # `lorapilot runs | head`: the reader has all it wanted. The Python docs' recipe (signal module, "Note on
        # SIGPIPE"): point stdout at devnull so that the flush at exit does not raise again, and exit quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _dispatch(argv: list[str] | None) -> int:
    import warnings

    # Libraries' deprecation notices are for us, not for someone training a model.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    parser = build_parser()
    a = parser.parse_args(argv)
    if not a.verb:
        parser.print_help()
        return EXIT_OK
    try:
        if a.verb in ("estimate",):
            from engine.estimate.command import run
            return run(a)
        if a.verb == "sweep":
            from engine.sweep.command import run as run_sweep
            return run_sweep(a)
        if a.verb in ("diagnose", "inspect-data", "prepare"):
            from engine.diagnose import command as diag
            return {"diagnose": diag.run_diagnose, "inspect-data": diag.run_inspect,
                    "prepare": diag.run_prepare}[a.verb](a)
        return {"train": _cmd_train, "runs": _cmd_runs, "stop": _cmd_stop, "export": _cmd_export,
                "chat": _cmd_chat, "monitor": _cmd_monitor,
                "playground": _cmd_playground}[a.verb](a)
    except UserError as e:
        print_error(_naming_the_config(e, a))
        return EXIT_BAD_INPUT
    except OSError as e:
        # A path the user named that the OS refuses before we could check it ourselves (a name too long,
        # permission denied): their input, exit 2. Anything else (a full disk) is not bad input.
        if e.errno not in _PATH_ERRNOS or not e.filename:
            raise
        print_error(f"{quote(str(e.filename))}: {e.strerror}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


def _naming_the_config(e: UserError, a: argparse.Namespace) -> UserError:
    """A refusal that names a key of the config the verb read (`lora.target_modules: 'x' not in a llama model`,
    found once the model's shapes are read, after the config validated) also names that file, as the validator's
    own refusals do: the user edits a file, and may have several."""
    from engine.config_paths import problem_path

    config = getattr(a, "config", None) or getattr(a, "fix", None) or getattr(a, "target", None)
    if config and Path(config).is_file() and problem_path(e.message) and str(config) not in e.message:
        e.message = f"{config}: {e.message}"
    return e


if __name__ == "__main__":
    sys.exit(main())
