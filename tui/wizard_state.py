"""The wizard's shared state: what the user typed, the config it validates to, and what the engine said.

The state keeps what the user typed as raw strings per dotted field path, so a
value the validator rejects is never lost, and the last config that validated
is what the model lookup, the data inspection, the estimate and the pre-flight
see. Every number and check comes from the engine (tui.models.wizard_engine_calls):
this module only decides *when* to ask it (debounced, in worker threads:
tui.debounced_jobs, so typing never waits for a tokenizer or the hub) and *who*
to tell (a Signal that the step screens subscribe to).
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.app import App
from textual.signal import Signal

from engine.config import FIELDS, Advice, Config, advice, config_from_dict, load_config
from engine.config_paths import flatten, get_path, problem_path, put_path
from engine.config_text import from_raw, to_raw
from engine.errors import ConfigError
from engine.estimate.command import planned_processes
from tui.debounced_jobs import DebouncedJobs
from tui.error_log import say
from tui.models import wizard_engine_calls as calls
from tui.models.data_inspection import inspect_data

if TYPE_CHECKING:  # what the engine's answers are; each loads in its worker, never at start-up
    from engine.data.types import DataReport, TokenizedExample
    from engine.diagnose.finding import Finding
    from engine.estimate import Estimate, GpuSpec, ModelInfo
    from engine.train.launch import RunHandle

# Which recomputation a field feeds. The model and the data are slow (hub,
# tokenizer), so they wait for a pause in typing; the estimate is cheap.
MODEL_FIELDS = {"model", "trust_remote_code"}
DATA_FIELDS = {"dataset.path", "dataset.format", "dataset.validation_split", "dataset.validation_path",
               "dataset.train_on", "dataset.max_examples", "training.max_seq_length"}
DETECTED = "detected"
# No GPU here: the run trains on this machine's CPU, and that is what the wizard plans until a card is picked.
CPU = "cpu"
# What a state change was, as the screens hear it: a keystroke in a field, or a value set elsewhere.
EDITED, SET = "edited", "set"
# The demo's tuning was reset while the user typed a model or dataset: every row but that one is rewritten.
DEMO_LEFT = "demo-left"
DELAY = {"model": 0.5, "rows": 0.3, "data": 0.4, "estimate": 0.15}


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


def _same_input(path: str, text: str, demo: str) -> bool:
    """The same model id, or the same data file however its path is written (relative, absolute, ~)."""
    if path != "dataset.path" or text == demo:
        return text == demo
    return bool(text.strip()) and os.path.realpath(os.path.expanduser(text.strip())) == \
        os.path.realpath(os.path.expanduser(demo.strip()))


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
        self.advice: dict[str, Advice] = {}  # valid values outside the recommended ranges
        self.notes = list(notes or [])
        # The opened config's keys the wizard has no field for (an unknown key, a typo): left out of what it shows,
        # saves and launches. Review says so for as long as it matters; the notice at start goes after 15 s.
        self.left_out = left_out_keys(raw_overrides or {}, self.notes)
        # What the engine said, each with the error that replaced it when it failed.
        self.model_info: ModelInfo | None = None
        self.model_error: str | None = None
        self.data_rows: int | None = None     # rows read (before any split)
        self.data_format: str | None = None   # the format detected (or forced)
        self.data_report: DataReport | None = None
        self.examples: list[TokenizedExample] = []
        self.tokenized_with: str | None = None   # the model whose tokenizer made data_report and examples
        self._data_model: str | None = None      # the model the newest data job tokenizes with
        self.data_error: str | None = None    # the data cannot be read at all
        self.inspect_error: str | None = None  # read, but not tokenized (e.g. no tokenizer)
        self.estimate: Estimate | None = None
        self.estimate_error: str | None = None
        self.findings: list[Finding] | None = None
        self.preflight_error: str | None = None
        self.gpus: list[GpuSpec] = []        # the engine's GPU presets
        self.gpu_detected: GpuSpec | None = None  # the card in this machine, or None
        self.gpu_key: str | None = None      # DETECTED, CPU or a preset id
        self.gpu: GpuSpec | None = None      # the spec the estimate is for; None: this machine's CPU
        self.price_per_hour: float | None = None  # for the cost line only; not part of the config
        self.last_run: RunHandle | None = None    # the run launched from here
        # The demo's own tuning (a 40-step run of a tiny random model), kept only while it trains the demo.
        self.demo_only: dict[str, str] = demo_only_values(self.raw) if config_path is None else {}
        self.typing_in: str | None = None  # the field being typed in when the demo's tuning was reset
        # The demo's model and data as the wizard opened on them, and what leaving them reset (key: (the demo's
        # value, the recipe's)): a typo in the path and its correction put the demo's tuning back.
        self.demo_inputs: dict[str, str] = {p: self.raw.get(p, "") for p in DEMO_INPUTS} if self.demo_only else {}
        self.demo_reset: dict[str, tuple[str, str]] = {}
        self.changed: Signal[str] = Signal(app, "wizard-changed")
        self.jobs = DebouncedJobs(app, "wizard", self._finish)
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
        if path in DEMO_INPUTS and (self.demo_only or self.demo_reset):
            if self._leave_demo() if self.demo_only else self._back_to_demo():
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
        self.demo_reset = {p: (demo[p], new) for p, new in reset.items()}
        return self._retune(reset, "The demo's tuning is for its tiny model; back to the QLoRA recipe's values:",
                            "Your own model or data")

    def _back_to_demo(self) -> list[str]:
        """The demo's model and data again (a typo corrected): its tuning comes back where the recipe's values
        it got are still untouched. Returns 'key old -> new' for each; says so in a notification."""
        if not all(_same_input(p, self.raw.get(p, ""), self.demo_inputs[p]) for p in DEMO_INPUTS):
            return []
        back = {p: demo for p, (demo, recipe) in self.demo_reset.items() if self.raw.get(p) == recipe}
        self.demo_reset = {}
        changes = self._retune(back, "The demo's model and data again: its tuning for the tiny model is back:",
                               "The demo")
        self.demo_only = demo_only_values(self.raw)
        return changes

    def _retune(self, values: dict[str, str], why: str, title: str) -> list[str]:
        """Set the demo's or the recipe's values and say which: 'key old -> new' for each."""
        changes = [f"{p.split('.')[-1]} {self.raw.get(p)} -> {new}" for p, new in values.items()]
        self.raw.update(values)
        for path in values:
            self.schedule_for(path)
        if changes:
            self.app.notify(why + "\n" + "\n".join(changes), title=title, timeout=10)
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

    def data_length(self) -> int | None:
        """The max_seq_length that keeps 95 % of the training examples whole (the pre-flight check's rule, on the
        trainer's own tokenization of this data, the rows a short max_seq_length drops included); None before the
        data is tokenized."""
        if not self.examples:
            return None
        from engine.diagnose.preflight import suggested_max_seq_length
        return suggested_max_seq_length(self.examples,
                                        too_long_lengths=getattr(self.data_report, "too_long_lengths", ()))

    def longest_useful_length(self) -> int | None:
        """What no proposal goes past: the model's context, and the data's 95th-percentile length (rounded up)."""
        caps = [c for c in (getattr(self.model_info, "context_length", None), self.data_length()) if c]
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
        plan = self.estimate.plan if self.estimate is not None else None
        if plan is not None:   # what the trainer's plan phase refuses (sample_prompts while auto shards the model)
            from engine.plan import sample_prompts_problem

            if problem := sample_prompts_problem(self.cfg, plan.samples_off):
                out.append(problem)
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
        self.jobs.schedule(kind, DELAY[kind] if delay is None else delay, partial(self._fire, kind))

    def refresh_all(self) -> None:
        """Ask the engine about everything once (at start); each answer schedules what depends on it."""
        self.jobs.run("gpu", calls.detect_gpus)
        self.schedule("model", 0)
        self.schedule("rows", 0)

    @property
    def busy(self) -> bool:
        """True while anything is pending: tests wait on this, the status line shows it."""
        return self.jobs.busy

    def busy_with(self, kind: str) -> bool:
        return self.jobs.busy_with(kind)

    def _fire(self, kind: str) -> None:
        cfg = self.cfg
        if kind == "model":
            self.jobs.run("model", calls.lookup_model, cfg.model)
        elif kind == "rows":
            self.jobs.run("rows", calls.count_rows, cfg)
        elif kind == "data":
            self._data_model = cfg.model
            self.jobs.run("data", inspect_data, cfg, cfg.model)
        elif kind == "estimate":
            self.jobs.run("estimate", calls.estimate_and_check, cfg, self.model_info, self.gpu, self.n_examples,
                          self.price_per_hour, self.data_report, self.examples,
                          self.busy_with("data") or self.busy_with("model"), self.data_error)
        self.changed.publish(f"busy:{kind}")

    def _finish(self, kind: str, result: Any, error: BaseException | None) -> None:
        """The newest answer of a kind (self.jobs drops superseded ones): kept, and what depends on it asked."""
        message = say(error, f"wizard: {kind}") if error is not None else None
        if kind == "gpu":
            if result is not None:
                self.gpus, self.gpu_detected = result
                if self.gpu_key is None:
                    # No GPU here: the run would train on this CPU, so that is the plan shown (what Launch does);
                    # someone planning for a rented pod picks the card.
                    self.select_gpu(DETECTED if self.gpu_detected else CPU)
            else:
                self.estimate_error = message
        elif kind == "model":
            self.model_info, self.model_error = result, message
            self.revalidate()  # the context limit is the model's
            # The data was tokenized with the old model's tokenizer: its error and its tokens are stale from now on
            # (a new tokenizer may take minutes to load: the old tokens were shown as the new model's all along).
            self.inspect_error = None
            if self.tokenized_with != self.cfg.model:
                self.data_report, self.examples = None, []
            self.schedule("data", 0)       # the tokenizer is the model's
            self.schedule("estimate", 0)
        elif kind == "rows":
            self.data_rows, self.data_format = result if result is not None else (None, None)
            self.data_error = message
            self.schedule("estimate", 0)
        elif kind == "data":
            self.data_report, self.examples = result if result is not None else (None, [])
            self.tokenized_with = self._data_model
            self.inspect_error = message
            self._read_built_demo()
            self.schedule("estimate", 0)
        elif kind == "estimate":
            est, findings, pf_error, est_error = result if result is not None else (None, None, None, message)
            self.estimate, self.estimate_error = est, est_error
            self.findings, self.preflight_error = findings, pf_error
            self.app.refresh_bindings()  # the Apply-fixes key shows while a finding names a setting
        self.changed.publish(kind)

    def _read_built_demo(self) -> None:
        """The demo's model is built on first use, by the data's tokenization; its shapes were read before that,
        with the tokenizer's target (1,024) as the vocabulary where the built one has 820. Once built, read again:
        the Model step and the estimate then show the model the trainer loads."""
        from engine.demo.model import DEMO_MODEL_ID, demo_model_dir

        info = self.model_info
        if info is None or info.name != DEMO_MODEL_ID or not (demo_model_dir() / "config.json").is_file():
            return
        built = calls.lookup_model(DEMO_MODEL_ID)  # the build lands whole (a rename), never half-written
        if built.config != info.config:
            self.model_info = built

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
        """(label, key) for the GPU picker: this machine first (its card, or its CPU when it has none), then the
        presets."""
        out = []
        if self.gpu_detected is not None:
            out.append((f"{self.gpu_detected.name} (this machine)", DETECTED))
        else:
            out.append(("no GPU: this machine's CPU", CPU))
        out += [(g.name, g.id) for g in self.gpus]
        return out

    def select_gpu(self, key: str | None) -> None:
        if key is None:
            return
        chosen = self.gpu_detected if key == DETECTED else next((g for g in self.gpus if g.id == key), None)
        if chosen is None and key != CPU:  # CPU plans with no card (gpu None); any other unknown key changes nothing
            return
        self.gpu_key, self.gpu = key, chosen
        self.changed.publish("gpu")
        self.schedule("estimate", 0)

    # -- actions the review screen offers

    def auto_fit(self) -> list[str]:
        """Apply the engine's fit (micro-batch and accumulation first, more only when those are not enough).

        Returns the engine's description of each change, for the user to read. The review screen asks only once
        the model's size is known (it says so otherwise).
        """
        changed: dict[str, Any] = {}
        notes: list[str] = []
        # On this machine's CPU there is no card to fit, and without the model's size nothing to fit it with:
        # only the length cap below.
        if self.gpu is not None and self.model_info is not None:
            from engine.estimate import auto_fit
            fit = auto_fit(self.cfg, self.model_info, self.gpu, n_examples=self.n_examples,
                           num_gpus=planned_processes(self.cfg, self.gpu), price_per_hour=self.price_per_hour,
                           **calls.plan_lengths(self.cfg, self.data_report, self.examples, self.busy_with("data")))
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

    def fixes(self, findings: list[Finding] | None) -> dict[str, Any]:
        """The settings these findings (what one step shows) name as their fix (`Set training.x to y`), valid ones
        only, and not already set."""
        from engine.config_edit import fix_setting
        out: dict[str, Any] = {}
        for f in findings or []:
            setting = fix_setting(f.fix)
            if setting and setting[0] not in out and self.raw.get(setting[0]) != to_raw(FIELDS[setting[0]], setting[1]):
                out[setting[0]] = setting[1]
        return out

    def apply_fixes(self, findings: list[Finding] | None) -> list[str]:
        """Apply every named setting of these findings; 'key old -> new' for each, for the user to read."""
        fixes = self.fixes(findings)
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

    def set_and_say(self, values: dict[str, Any]) -> list[str]:
        """Set the values that differ from what the fields hold (a recipe): 'key old -> new' for each, for the user
        to read. A value the field already holds, however it is typed (2e-4 for 0.0002), keeps its text; a field
        whose text the validator refused is replaced, and said so."""
        current = self.cfg.to_dict()
        differ = {k: v for k, v in values.items() if k in FIELDS and
                  (k in self.problems or to_raw(FIELDS[k], get_path(current, k)) != to_raw(FIELDS[k], v))}
        changes = [self._change(k, v) for k, v in differ.items()]
        if differ:
            self.set_many(differ)
        return changes

    def set_price(self, price: float | None) -> None:
        if price != self.price_per_hour:
            self.price_per_hour = price
            self.schedule("estimate")


def left_out_keys(overrides: dict[str, Any], notes: list[str]) -> list[str]:
    """Each key of an opened config that names no field, in the validator's words where its problems name it
    ("training.learning_rat: unknown key; did you mean 'learning_rate'?")."""
    said: dict[str, str] = {}
    for line in "\n".join(notes).splitlines():
        text = line.strip().removeprefix("- ")
        said.setdefault(text.split(":", 1)[0], text)

    def words(key: str) -> str:   # a key under a misspelt section (trainig.learning_rate): the section's problem
        parts = key.split(".")
        return next((said[".".join(parts[:n])] for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in said),
                    f"{key}: not a setting")
    return list(dict.fromkeys(words(key) for key in overrides if key not in FIELDS))


def initial_config(config_path: str | None) -> tuple[Config, dict[str, Any], list[str]]:
    """The config the wizard opens with, the raw values to show, and notes for the user.

    A saved config that does not validate still opens: its values go into the
    fields as written, where the validator's problems show next to them.
    """
    if config_path is None:
        from engine.demo.model import DEMO_MODEL_ID, demo_config_path, demo_data_path
        demo = demo_config_path()
        if demo.exists():
            return load_config(demo), {}, []
        # presets/demo.yaml not there (an older checkout): the same two values it holds.
        return config_from_dict({"model": DEMO_MODEL_ID, "dataset": {"path": str(demo_data_path())}}), {}, []
    try:
        return load_config(config_path), {}, []
    except ConfigError as e:
        from engine.config_file import read_as_written

        notes = [str(e)]
        raw = read_as_written(Path(config_path))  # None where unreadable: the notes above say why
        overrides = flatten(raw) if isinstance(raw, dict) else {}
        return Config(), overrides, notes
