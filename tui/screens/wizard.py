"""The wizard: four step screens over one shared state.

Model -> Dataset -> Hyperparameters -> Review (the run is launched from
Review). The state keeps what the user typed as raw strings per dotted field
path, so a value the validator rejects is never lost, and the last config that
validated is what the model lookup, the data inspection, the estimate and the
pre-flight see. Every number and check shown comes from the engine: this
module only decides *when* to ask it (debounced, in worker threads, so typing
never waits for a tokenizer or the hub) and *who* to tell (a Signal that the
screens subscribe to).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable

import yaml
from textual import events, on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen
from textual.signal import Signal
from textual.timer import Timer
from textual.widgets import Footer

from engine.config import FIELDS, Config, FieldSpec, advice, config_from_dict, load_config
from engine.errors import ConfigError, UserError
from engine.estimate.command import planned_processes
from tui.error_log import say
from tui.widgets.estimate_line import EstimateLine
from tui.widgets.field_row import FieldRow
from tui.widgets.finding_blocks import FindingBlocks
from tui.widgets.problem_list import title_of
from tui.widgets.step_bar import StepBar

STEPS = ("model", "dataset", "hyperparams", "review")
STEP_TITLES = {"model": "Model", "dataset": "Dataset", "hyperparams": "Hyperparameters", "review": "Review"}

# Which recomputation a field feeds. The model and the data are slow (hub,
# tokenizer), so they wait for a pause in typing; the estimate is cheap.
MODEL_FIELDS = {"model", "trust_remote_code"}
DATA_FIELDS = {"dataset.path", "dataset.format", "dataset.validation_split", "dataset.validation_path",
               "dataset.train_on", "dataset.max_examples", "training.max_seq_length"}
DETECTED = "detected"
# What a state change was, as the screens hear it: a keystroke in a field, or a value set elsewhere.
EDITED, SET = "edited", "set"
# The demo's tuning was reset while the user typed a model or dataset: every row but that one is rewritten.
DEMO_LEFT = "demo-left"
DELAY = {"model": 0.5, "rows": 0.3, "data": 0.4, "estimate": 0.15}


def presets_dir() -> Path:
    import engine
    return Path(engine.__file__).resolve().parents[1] / "presets"


def screen_name(step: str) -> str:
    return f"wizard-{step}"


# ---------------------------------------------------------------- raw strings <-> values

def to_raw(spec: FieldSpec, value: Any) -> str:
    """How a value reads in its field: the way one would write it in the YAML config."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return str(value)


def from_raw(spec: FieldSpec, text: str) -> Any:
    """The value a field's text stands for, read as the YAML config would read it.

    Validation is the engine's (config_from_dict); this only undoes the text box.
    """
    stripped = text.strip()
    if stripped == "" and spec.nullable:
        return None
    if spec.type is str and spec.kind is None:
        return stripped
    try:
        return yaml.safe_load(stripped)
    except yaml.YAMLError:
        return stripped  # the validator then names the field and what it expects


def get_path(d: dict, path: str) -> Any:
    head, _, tail = path.partition(".")
    return d[head][tail] if tail else d[head]


def put_path(d: dict, path: str, value: Any) -> None:
    head, _, tail = path.partition(".")
    if tail:
        d.setdefault(head, {})[tail] = value
    else:
        d[head] = value


def problem_path(problem: str) -> str:
    """The dotted key a ConfigError problem line names ('' when it names none we show)."""
    head = problem.split(":", 1)[0].strip()
    return head if head in FIELDS else ""


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """A (partial) config mapping as dotted paths, e.g. a recipe's keys."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in FIELDS:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _say(error: BaseException, during: str = "the wizard") -> str:
    """An error as one line the user can act on; a bug is logged with its traceback (tui.error_log)."""
    return say(error, during)


# ---------------------------------------------------------------- the demo's own tuning

# Leaving either of these (your own model or your own data) ends the demo.
DEMO_INPUTS = ("model", "dataset.path")


def demo_only_values(raw: dict[str, str]) -> dict[str, str]:
    """The demo's values that differ from the recipe's defaults (lr 3e-3, max_steps 40, ...), as shown.

    Empty when the wizard does not open on the demo.
    """
    from engine.demo.model import DEMO_MODEL_ID
    if from_raw(FIELDS["model"], raw.get("model", "")) != DEMO_MODEL_ID:
        return {}
    defaults = Config().to_dict()
    return {p: text for p, text in raw.items()
            if p not in DEMO_INPUTS and text != to_raw(FIELDS[p], get_path(defaults, p))}


# ---------------------------------------------------------------- the shared state

class WizardState:
    """What the user typed, the config it validates to, and what the engine said about it."""

    def __init__(self, app: App, cfg: Config, *, config_path: str | None = None,
                 raw_overrides: dict[str, Any] | None = None, notes: list[str] | None = None):
        self.app = app
        self.config_path = config_path
        self.cfg = cfg                      # the last config that validated
        self.raw: dict[str, str] = {}
        d = cfg.to_dict()
        for key, value in (raw_overrides or {}).items():
            if key in FIELDS:
                put_path(d, key, value)
        for path, spec in FIELDS.items():
            self.raw[path] = to_raw(spec, get_path(d, path))
        self.problems: dict[str, list[str]] = {}
        self.advice: dict[str, str] = {}     # valid values outside the seeds' recommended ranges
        self.notes = list(notes or [])
        # What the engine said, each with the error that replaced it when it failed.
        self.model_info: Any = None
        self.model_error: str | None = None
        self.data_rows: int | None = None     # rows read (before any split)
        self.data_format: str | None = None   # the format detected (or forced)
        self.data_report: Any = None
        self.examples: list = []
        self.data_error: str | None = None    # the data cannot be read at all
        self.inspect_error: str | None = None  # read, but not tokenized (e.g. no tokenizer)
        self.estimate: Any = None
        self.estimate_error: str | None = None
        self.findings: list | None = None
        self.preflight_error: str | None = None
        self.gpus: list = []                 # the engine's GPU presets
        self.gpu_detected: Any = None        # the card in this machine, or None
        self.gpu_key: str | None = None      # DETECTED or a preset id
        self.gpu: Any = None                 # the spec the estimate is for
        self.price_per_hour: float | None = None  # for the cost line only; not part of the config
        self.last_run: Any = None                 # the RunHandle of the run launched from here
        # The demo's own tuning (a 40-step run of a tiny random model), kept only while it trains the demo.
        self.demo_only: dict[str, str] = demo_only_values(self.raw) if config_path is None else {}
        self.typing_in: str | None = None  # the field being typed in when the demo's tuning was reset
        self.changed: Signal[str] = Signal(app, "wizard-changed")
        self._timers: dict[str, Timer] = {}
        self._gen: dict[str, int] = {}
        self._running: set[tuple[str, int]] = set()
        self.revalidate()

    # -- editing

    def edit(self, path: str, text: str) -> None:
        """The user typed in the field itself: the editor already shows it."""
        self._set(path, text, EDITED)

    def set_raw(self, path: str, text: str) -> None:
        """A value set from elsewhere (a preset picked, a file chosen): fields must show it."""
        self._set(path, text, SET)

    def _set(self, path: str, text: str, how: str) -> None:
        if self.raw.get(path) == text:
            return
        self.raw[path] = text
        if path in DEMO_INPUTS and self.demo_only:
            if self._leave_demo():
                # Values changed on other rows: they show them. Not the row being typed in: its editor runs
                # ahead of the state, and writing this keystroke's text back would eat the next ones.
                how = SET if how == SET else DEMO_LEFT
                self.typing_in = path
        self.revalidate()
        self.changed.publish(how)
        self.schedule_for(path)

    def _leave_demo(self) -> list[str]:
        """Your own model or data: the demo's tuning goes back to the recipe's, except what you changed yourself.

        Returns 'key old -> new' for each value reset; says so in a notification.
        """
        demo, self.demo_only = self.demo_only, {}
        defaults = {p: to_raw(FIELDS[p], get_path(Config().to_dict(), p)) for p in demo}
        reset = {p: defaults[p] for p, text in demo.items() if self.raw.get(p) == text}
        changes = [f"{p.split('.')[-1]} {demo[p]} -> {new}" for p, new in reset.items()]
        self.raw.update(reset)
        for path in reset:
            self.schedule_for(path)
        if changes:
            self.app.notify("The demo's tuning is for its tiny model; back to the QLoRA recipe's values:\n"
                            + "\n".join(changes), title="Your own model or data", timeout=10)
        return changes

    def set_many(self, values: dict[str, Any]) -> None:
        """Apply several values at once (a recipe, an auto-fit): one validation, one recompute."""
        touched = [p for p in values if p in FIELDS]
        for path in touched:
            self.raw[path] = to_raw(FIELDS[path], values[path])
        self.revalidate()
        self.changed.publish(SET)
        for path in touched:
            self.schedule_for(path)

    def revalidate(self) -> None:
        """Validate every raw string through the engine, then ask it which valid values are unusual."""
        self._validate()
        self._check_context()
        self.advice = advice(self.cfg)

    def _check_context(self) -> None:
        """max_seq_length past the model's context: an error on its row (positions beyond it were never trained)."""
        context = getattr(self.model_info, "context_length", None)
        length = self.cfg.training.max_seq_length
        if context and length > context and "training.max_seq_length" not in self.problems:
            self.problems["training.max_seq_length"] = [
                f"training.max_seq_length: {length:,} is past the model's context of {context:,} tokens; "
                f"at most {context:,}"]

    def longest_useful_length(self) -> int | None:
        """What no proposal goes past: the model's context, and the data's 95th-percentile length (rounded up)."""
        from engine.diagnose.preflight import suggested_max_seq_length
        caps = [c for c in (getattr(self.model_info, "context_length", None),) if c]
        if self.examples:
            caps.append(suggested_max_seq_length([e.full_length for e in self.examples]))
        return min(caps) if caps else None

    def _validate(self) -> None:
        """Keep the last good config for estimates; the rejected values become problems by field."""
        d = self.cfg.to_dict()
        for path, text in self.raw.items():
            put_path(d, path, from_raw(FIELDS[path], text))
        try:
            self.cfg = config_from_dict(d, source="wizard")
            self.problems = {}
            return
        except ConfigError as e:
            problems: dict[str, list[str]] = {}
            for line in e.problems or [e.message]:
                problems.setdefault(problem_path(line), []).append(line)
            self.problems = problems
        # The rest of the values still count: drop only the rejected ones and try once more.
        good = self.cfg.to_dict()
        for path in self.problems:
            if path:
                put_path(d, path, get_path(good, path))
        try:
            self.cfg = config_from_dict(d, source="wizard")
        except ConfigError:
            pass  # keep the previous good config

    def problems_for(self, path: str) -> list[str]:
        return self.problems.get(path, [])

    @property
    def valid(self) -> bool:
        return not self.problems

    def all_problems(self) -> list[str]:
        return [p for lines in self.problems.values() for p in lines]

    def blockers(self) -> list[str]:
        """What stops a launch: the rejected values, and a model or dataset that cannot be read.

        A config can validate and still name a file that is not there (a typo, the README's example path);
        the run would only fail after detaching, so Review names it and Launch refuses.
        """
        out = self.all_problems()
        if self.model_error:
            out.append(f"model: {self.model_error}")
        if self.data_error:
            out.append(f"dataset.path: {self.data_error}")
        return out

    # -- recomputation

    def schedule_for(self, path: str) -> None:
        if path in MODEL_FIELDS:
            self.schedule("model")
        elif path in DATA_FIELDS:
            self.schedule("rows")
            self.schedule("data")
        else:
            self.schedule("estimate")

    def schedule(self, kind: str, delay: float | None = None) -> None:
        """Debounce: the last change in a burst of typing is the one that runs."""
        old = self._timers.pop(kind, None)
        if old is not None:
            old.stop()
        delay = DELAY[kind] if delay is None else delay
        # A zero-delay Timer divides by zero inside Textual; "at once" is the next tick.
        self._timers[kind] = self.app.set_timer(max(delay, 0.01), partial(self._fire, kind))

    def refresh_all(self) -> None:
        """Ask the engine about everything once (at start); each answer schedules what depends on it."""
        self._run("gpu", _detect_gpus)
        self.schedule("model", 0)
        self.schedule("rows", 0)

    @property
    def busy(self) -> bool:
        """True while anything is pending: tests wait on this, the status line shows it."""
        return bool(self._timers) or any((k, self._gen.get(k)) in self._running for k, _ in self._running)

    def busy_with(self, kind: str) -> bool:
        # Only the newest request counts: a superseded one (a hub timeout) may run on, ignored.
        return kind in self._timers or (kind, self._gen.get(kind)) in self._running

    def _fire(self, kind: str) -> None:
        self._timers.pop(kind, None)
        cfg = self.cfg
        if kind == "model":
            self._run("model", _lookup_model, cfg.model)
        elif kind == "rows":
            self._run("rows", _read_rows, cfg)
        elif kind == "data":
            self._run("data", _inspect_data, cfg, cfg.model)
        elif kind == "estimate":
            self._run("estimate", _estimate_and_check, cfg, self.model_info, self.gpu, self.n_examples,
                      self.price_per_hour, self.data_report, self.examples,
                      self.busy_with("data") or self.busy_with("model"))
        self.changed.publish(f"busy:{kind}")

    def _run(self, kind: str, fn: Callable, *args: Any) -> None:
        gen = self._gen[kind] = self._gen.get(kind, 0) + 1
        self._running.add((kind, gen))

        def job() -> None:
            try:
                result, error = fn(*args), None
            except Exception as exc:  # noqa: BLE001 - shown inline by the screen that owns it; _say logs a bug
                result, error = None, exc
            try:
                self.app.call_from_thread(self._finish, kind, gen, result, error)
            except RuntimeError:
                pass  # the app has closed meanwhile

        self.app.run_worker(job, name=f"wizard-{kind}", group=f"wizard-{kind}", thread=True,
                            exit_on_error=False)

    def _finish(self, kind: str, gen: int, result: Any, error: BaseException | None) -> None:
        self._running.discard((kind, gen))
        if gen != self._gen.get(kind):
            return  # a newer request for the same thing is on its way
        message = _say(error, f"wizard: {kind}") if error is not None else None
        if kind == "gpu":
            if result is not None:
                self.gpus, self.gpu_detected = result
                if self.gpu_key is None:
                    # No GPU here (planning on a laptop for a rented pod): the first preset, the smallest card.
                    self.select_gpu(DETECTED if self.gpu_detected else (self.gpus[0].id if self.gpus else None))
            else:
                self.estimate_error = message
        elif kind == "model":
            self.model_info, self.model_error = result, message
            self.revalidate()  # the context limit is the model's
            # The data was tokenized with the old model's tokenizer: its error is stale from now on.
            self.inspect_error = None
            self.schedule("data", 0)       # the tokenizer is the model's
            self.schedule("estimate", 0)
        elif kind == "rows":
            self.data_rows, self.data_format = result if result is not None else (None, None)
            self.data_error = message
            self.schedule("estimate", 0)
        elif kind == "data":
            self.data_report, self.examples = result if result is not None else (None, [])
            self.inspect_error = message
            self.schedule("estimate", 0)
        elif kind == "estimate":
            est, findings, pf_error, est_error = result if result is not None else (None, None, None, message)
            self.estimate, self.estimate_error = est, est_error
            self.findings, self.preflight_error = findings, pf_error
            self.app.refresh_bindings()  # the Apply-fixes key shows while a finding names a setting
        self.changed.publish(kind)

    @property
    def n_examples(self) -> int | None:
        """Training examples for the step count: the trainer's split once the data is tokenized (the count the
        statistics and the checklist show), before that counted from the rows as `lorapilot estimate` does."""
        if self.data_report is not None and not self.busy_with("data"):
            return self.data_report.n_train
        if self.data_rows is None:
            return None
        from engine.estimate import training_examples  # what `lorapilot estimate` counts, the same way
        d = self.cfg.dataset
        return training_examples(self.data_rows, d.validation_split, bool(d.validation_path))

    def gpu_options(self) -> list[tuple[str, str]]:
        """(label, key) for the GPU picker: the card in this machine first, then the presets."""
        out = []
        if self.gpu_detected is not None:
            out.append((f"{self.gpu_detected.name} (this machine)", DETECTED))
        out += [(g.name, g.id) for g in self.gpus]
        return out

    def select_gpu(self, key: str | None) -> None:
        if key is None:
            return
        chosen = self.gpu_detected if key == DETECTED else next((g for g in self.gpus if g.id == key), None)
        if chosen is None:
            return
        self.gpu_key, self.gpu = key, chosen
        self.changed.publish("gpu")
        self.schedule("estimate", 0)

    # -- actions the review screen offers

    def auto_fit(self) -> list[str]:
        """Apply the engine's fit (micro-batch and accumulation first, more only when those are not enough).

        Returns the engine's description of each change, for the user to read.
        """
        from engine.estimate import auto_fit
        fit = auto_fit(self.cfg, self.model_info, self.gpu, n_examples=self.n_examples,
                       num_gpus=planned_processes(self.cfg, self.gpu), price_per_hour=self.price_per_hour,
                       **_plan_lengths(self.cfg, self.data_report, self.examples, self.busy_with("data")))
        current = self.cfg.to_dict()
        changed = {k: v for k, v in fit.settings.items() if get_path(current, k) != v}
        notes = [c.description for c in fit.changes]
        cap = self.longest_useful_length()
        length = changed.get("training.max_seq_length", self.cfg.training.max_seq_length)
        if cap and length > cap:
            # Never propose a length past the context or far past the data: cut to what the data needs.
            changed["training.max_seq_length"] = cap
            notes = [n for n in notes if not n.startswith("max_seq_length")]
            notes.append(f"max_seq_length {self.cfg.training.max_seq_length} -> {cap} (the model's context or "
                         "the data's 95th-percentile length, whichever is shorter)")
        if changed:
            self.set_many(changed)
        return notes

    def fixes(self) -> dict[str, Any]:
        """The settings the current findings name as their fix (`Set training.x to y`), valid ones only."""
        from engine.config_edit import fix_setting
        out: dict[str, Any] = {}
        for f in self.findings or []:
            setting = fix_setting(f.fix)
            if setting and setting[0] not in out and self.raw.get(setting[0]) != to_raw(FIELDS[setting[0]], setting[1]):
                out[setting[0]] = setting[1]
        return out

    def apply_fixes(self) -> list[str]:
        """Apply every finding's named setting; 'key old -> new' for each, for the user to read."""
        fixes = self.fixes()
        changes = [self._change(k, v) for k, v in fixes.items()]
        if fixes:
            self.set_many(fixes)
        return changes

    def apply_finding(self, finding: Any) -> str | None:
        """Apply the one setting a finding's fix names: 'key old -> new', or 'key is already v' when it holds
        that value (the checks are catching up). None when the fix is no single setting (the user's to do)."""
        from engine.config_edit import fix_setting
        setting = fix_setting(finding.fix)
        if setting is None:
            return None
        key, value = setting
        if self.raw.get(key) == to_raw(FIELDS[key], value):
            return f"{key} is already {self.raw[key]}"
        change = self._change(key, value)
        self.set_many({key: value})
        return change

    def _change(self, key: str, value: Any) -> str:
        return f"{key} {self.raw.get(key) or '(empty)'} -> {to_raw(FIELDS[key], value)}"

    def set_price(self, price: float | None) -> None:
        if price != self.price_per_hour:
            self.price_per_hour = price
            self.schedule("estimate")


# ---------------------------------------------------------------- engine calls (run in worker threads)

def _detect_gpus() -> tuple[list, Any]:
    from engine.estimate import detect_gpu, list_gpus
    return list_gpus(), detect_gpu()


def _lookup_model(model: str) -> Any:
    from engine.estimate import read_model_config
    return read_model_config(model)


def _read_rows(cfg: Config) -> tuple[int, str]:
    """Rows and format: cheap (no tokenizer), and all the step count needs."""
    from engine.data import read_rows
    rows, fmt, _sources = read_rows(cfg.dataset.path, cfg.dataset.format)
    return len(rows), fmt


_pool: Any = None


def _data_pool() -> Any:
    """One long-lived helper process for tokenizing.

    A thread is not enough: importing transformers and loading a tokenizer hold
    the GIL for seconds, and the UI froze for them (keys took 2 s to echo at
    start-up). In its own process the tokenizer stays loaded between calls and
    the UI thread only waits on a pipe.
    """
    global _pool
    if _pool is None:
        import atexit
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from tui.helper_process import quiet_child, real_stderr
        with real_stderr():
            _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=quiet_child)
        atexit.register(_pool.shutdown, wait=False, cancel_futures=True)
    return _pool


def _inspect_data(cfg: Config, model: str) -> tuple[Any, list]:
    """The tokenized report and examples: slow the first time (the tokenizer; maybe the hub)."""
    from concurrent.futures.process import BrokenProcessPool

    # The trainer's own preparation of this config (train_on, validation split, max_examples, truncation).
    from engine.data import inspect_config  # light: the heavy imports happen inside, in the helper
    try:
        return _data_pool().submit(inspect_config, cfg, model=model).result()
    except BrokenProcessPool:  # the helper died (out of memory, killed): start a fresh one once
        global _pool
        _pool = None
        return _data_pool().submit(inspect_config, cfg, model=model).result()


def _plan_lengths(cfg: Config, report: Any, examples: list, data_pending: bool) -> dict:
    """The tokenized examples' lengths, split as the trainer splits them, for the run's plan (engine.plan): the
    estimate then packs the micro-batches the trainer will, as `lorapilot estimate` does. Empty while the data is
    being read (the estimate says it assumed full-length examples)."""
    if report is None or data_pending or not examples:
        return {}
    # inspect_config's examples are the training ones; the validation lengths come with its report
    train, val = [len(e) for e in examples], list(getattr(report, "validation_lengths", None) or [])
    return {"lengths": train or None, "val_lengths": val or None}


def _estimate_and_check(cfg: Config, model_info: Any, gpu: Any, n_examples: int | None, price: float | None,
                        report: Any, examples: list, data_pending: bool) -> tuple[Any, list | None, str | None]:
    """The estimate, then the pre-flight over the tokenized examples (with the estimate's memory if any).

    Raises only when the estimate fails and the pre-flight had nothing to run on.
    """
    from engine.estimate.command import estimate_for
    est, est_error = None, None
    try:
        if model_info is None:
            raise UserError("the estimate needs the model's size: pick a model that can be read")
        # The one estimate `lorapilot estimate` and the sweep show for this config: same steps, same time.
        est, _ = estimate_for(cfg, model_info, gpu, n_examples=n_examples, price_per_hour=price,
                              **_plan_lengths(cfg, report, examples, data_pending))
    except Exception as exc:  # noqa: BLE001 - a checklist line; _say below logs it when it is a bug
        est_error = exc
    findings, pf_error = None, None
    if report is not None and not data_pending:
        try:
            from engine.diagnose.preflight import preflight
            # The card's total against what nvidia-smi will show (context and slack included): the
            # same comparison the estimate's own fit test makes, so the two never disagree.
            findings = preflight(examples, cfg, gpu_bf16=getattr(gpu, "bf16", None),
                                 est_peak_gib=est.device_total_gib if est else None,
                                 gpu_total_gib=gpu.memory_gib if (est and gpu) else None,
                                 dropped=getattr(report, "dropped", None),
                                 num_gpus=planned_processes(cfg, gpu),
                                 # the plan's step counts (the status line's), not a second count
                                 planned_steps=(est.steps_per_epoch, est.total_steps) if est else None)
        except Exception as exc:  # noqa: BLE001 - a checklist line; _say logs it when it is a bug
            pf_error = _say(exc, "pre-flight checks")
    if est_error is not None and findings is None:
        raise est_error
    return est, findings, pf_error, (_say(est_error, "the estimate") if est_error else None)


# ---------------------------------------------------------------- the screens' common frame

class WizardCommands(Provider):
    """The wizard's moves in the command palette (ctrl+p): experts type, nobody hunts for keys."""

    def _commands(self) -> list[tuple[str, Callable, str]]:
        app = self.app
        cmds: list[tuple[str, Callable, str]] = [
            (f"Go to: {STEP_TITLES[s]}", partial(go_to, app, s), f"Step {i + 1} of the wizard")
            for i, s in enumerate(STEPS)]
        screen = self.screen
        for name, description in (("save_config", "Save the config (Review)"),
                                  ("auto_fit", "Apply the suggested micro-batch and accumulation"),
                                  ("launch", "Start the run, detached, and open the monitor"),
                                  ("recipes", "Pick a hyperparameter recipe")):
            if hasattr(screen, f"action_{name}"):
                cmds.append((description, partial(screen.run_action, name), name.replace("_", " ")))
        return cmds

    async def discover(self) -> Hits:
        for title, callback, help_text in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, callback, help_text in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)


class WizardStep(Screen):
    """One step: the step bar, the body, the live estimate line and the footer."""

    STEP = ""
    # The first field, not the scroll container around it: typing should land in a field at once.
    AUTO_FOCUS = ".field-editor"
    COMMANDS = App.COMMANDS | {WizardCommands}
    BINDINGS = [
        Binding("ctrl+n", "next", "Next"),
        Binding("escape", "back", "Back"),
        # Shown only while a finding names a setting as its fix (check_action). enter on one finding applies its
        # fix alone (tui.widgets.finding_blocks).
        Binding("ctrl+g", "apply_fixes", "Apply all"),
    ]
    # Below this width the footer drops its padding: at 80 columns every key still shows, none is cut.
    COMPACT_FOOTER_BELOW = 100

    @property
    def state(self) -> WizardState:
        return self.app.wizard  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        yield StepBar(STEPS, STEP_TITLES, self.STEP)
        yield from self.compose_body()
        yield EstimateLine()
        yield Footer(compact=self.app.size.width < self.COMPACT_FOOTER_BELOW)

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.state.changed.subscribe(self, self._state_changed)
        self.refresh_from_state(SET)

    def on_resize(self, event: events.Resize) -> None:
        footer = self.query_one(Footer)
        compact = event.size.width < self.COMPACT_FOOTER_BELOW
        if footer.compact != compact:
            footer.compact = compact
            footer.refresh(recompose=True)  # keys drawn before the change keep their old padding otherwise

    def on_screen_resume(self) -> None:
        # Back from another step or a modal: nobody is typing here, so every field may be rewritten.
        self.refresh_from_state(SET)

    def _state_changed(self, what: str) -> None:
        if self.is_current:
            self.refresh_from_state(what)

    def refresh_from_state(self, what: str) -> None:
        """Bring every widget in line with the state; `what` says what changed (EDITED, SET, a kind)."""
        overwrite = what == SET
        for row in self.query(FieldRow):
            row.sync(self.state.raw[row.path], self.state.problems_for(row.path), self.state.advice.get(row.path),
                     overwrite=overwrite or (what == DEMO_LEFT and row.path != self.state.typing_in))
        self.query_one(EstimateLine).show(self.state)

    @on(FieldRow.Edited)
    def _field_edited(self, event: FieldRow.Edited) -> None:
        self.state.edit(event.path, event.text)

    @on(StepBar.Picked)
    def _step_picked(self, event: StepBar.Picked) -> None:
        go_to(self.app, event.step)

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "apply_fixes":
            return bool(self.state.fixes())
        return True

    @on(FindingBlocks.Apply)
    def _apply_finding(self, event: FindingBlocks.Apply) -> None:
        """enter on a finding: its fix only, and what it changed (the estimate and the checks re-run)."""
        f = event.finding
        title = f"Fix: {title_of(f.code)}"
        change = self.state.apply_finding(f)
        if change is not None:
            self.notify(change, title=title, timeout=8)
        elif f.fix:
            self.notify(f"This fix is not one setting the wizard can change; it is yours to do:\n{f.fix}",
                        title=title, severity="warning", timeout=8)
        else:
            self.notify("This finding names no fix.", title=title, severity="warning", timeout=4)

    def action_apply_fixes(self) -> None:
        changes = self.state.apply_fixes()
        if changes:
            self.notify("\n".join(changes), title="Applied the findings' fixes", timeout=8)
        else:
            self.notify("No finding names a setting to change.", timeout=3)

    def action_next(self) -> None:
        i = STEPS.index(self.STEP)
        if i + 1 < len(STEPS):
            go_to(self.app, STEPS[i + 1])

    def action_back(self) -> None:
        i = STEPS.index(self.STEP)
        if i > 0:
            go_to(self.app, STEPS[i - 1])
        else:
            self.notify("This is the first step; ctrl+q quits.", timeout=3)


def go_to(app: App, step: str) -> None:
    app.switch_screen(screen_name(step))


# ---------------------------------------------------------------- start

def _initial_config(config_path: str | None) -> tuple[Config, dict[str, Any], list[str]]:
    """The config the wizard opens with, the raw values to show, and notes for the user.

    A saved config that does not validate still opens: its values go into the
    fields as written, where the validator's problems show next to them.
    """
    if config_path is None:
        demo = presets_dir() / "demo.yaml"
        if demo.exists():
            return load_config(demo), {}, []
        # presets/demo.yaml not there (an older checkout): the same two values it holds.
        from engine.demo.model import DEMO_MODEL_ID, demo_data_path
        return config_from_dict({"model": DEMO_MODEL_ID, "dataset": {"path": str(demo_data_path())}}), {}, []
    try:
        return load_config(config_path), {}, []
    except ConfigError as e:
        notes = [str(e)]
        try:
            raw = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):  # unreadable: the notes above say why
            raw = None
        overrides = flatten(raw) if isinstance(raw, dict) else {}
        return Config(), overrides, notes


def start_wizard(app: App, config_path: str | None = None) -> None:
    """Opens the wizard on the model step (the app shell calls this)."""
    from tui.screens.dataset import DatasetScreen
    from tui.screens.hyperparams import HyperparamsScreen
    from tui.screens.model import ModelScreen
    from tui.screens.review import ReviewScreen

    cfg, overrides, notes = _initial_config(config_path)
    state = WizardState(app, cfg, config_path=config_path, raw_overrides=overrides, notes=notes)
    app.wizard = state  # type: ignore[attr-defined]
    screens = {"model": ModelScreen, "dataset": DatasetScreen, "hyperparams": HyperparamsScreen,
               "review": ReviewScreen}
    for step in STEPS:
        # Installed screens outlive switching, so focus and scroll positions survive going back and forth.
        if not app.is_screen_installed(screen_name(step)):
            app.install_screen(screens[step](), screen_name(step))
    app.push_screen(screen_name("model"))
    for note in notes:
        app.notify(note, title="The config has problems; they are shown next to the fields",
                   severity="error", timeout=15)
    state.refresh_all()
