"""Step 4: will it fit, how long will it take, is anything wrong — then save, or launch.

Everything here is the engine's: the estimate (memory by component, steps,
time), auto-fit, the pre-flight findings, the `lorapilot train` command. This
screen only arranges them and offers the keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.widgets import Button, Input, Label, Select, Static

from engine.config import Config
from engine.learning_rate import lr_verdict
from engine.settings import mem_text
from tui.error_log import say
from tui.screens.wizard import WizardStep
from tui.widgets.checklist import Checklist
from tui.widgets.estimate_line import fmt_cost, fmt_duration
from tui.widgets.typed_input import TypedInput
from tui.widgets.vram_bar import VramBar

if TYPE_CHECKING:  # the launcher loads when Launch is pressed
    from engine.estimate.estimator import Estimate
    from engine.train.launch import RunHandle

DEFAULT_SAVE = "lorapilot.yaml"
GPU_LIST_PENDING = "reading"   # the GPU picker's one entry until the list is read (no card has this id)
CONFIRM_S = 6.0  # how long a second ctrl+l counts as "launch anyway"


class ReviewScreen(WizardStep):
    STEP = "review"
    CSS_PATH = "review.tcss"
    AUTO_FOCUS = "#gpu-select"
    BINDINGS = [
        Binding("ctrl+f", "auto_fit", "Auto-fit"),
        Binding("ctrl+s", "save_config", "Save"),
        Binding("ctrl+l", "launch", "Launch"),
    ]

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="review-body"):
            # First: what stops a launch is the first thing read, not below the fold at 80x24.
            yield Static(id="review-problems")
            with Horizontal(id="gpu-line", classes="line"):
                yield Label("GPU", classes="key")
                # No blank entry: a placeholder left in the list once it is read could be picked, shown, and
                # planned for as nothing (the card picked before stays the plan's).
                yield Select([("reading the GPU list…", GPU_LIST_PENDING)], allow_blank=False, compact=True,
                             id="gpu-select")
                yield Label("$/h", classes="key short")
                yield TypedInput(placeholder="price", compact=True, id="price", restrict=r"[0-9.]*")
            yield Static(id="fit-verdict")
            yield VramBar(id="vram-bar")
            yield Static(id="plan")
            yield Label("Pre-flight checklist", classes="section-title")
            yield Checklist(id="checklist")
            yield Label("Run it from a shell", classes="section-title")
            yield Static(id="train-command")
            with Horizontal(id="save-line", classes="line"):
                yield Label("save to", classes="key")
                yield TypedInput(value=self.state.config_path or DEFAULT_SAVE, compact=True, id="save-path")
                yield Button("Save", id="save", compact=True)
                yield Button("Launch", id="launch", variant="primary", compact=True)

    def on_mount(self) -> None:
        self._confirm_until = 0.0
        self._agreed: Path | None = None   # the file the user said yes to changing (ConfirmReplace)
        super().on_mount()

    # -- showing

    def refresh_from_state(self, what: str) -> None:
        super().refresh_from_state(what)
        s, est = self.state, self.state.estimate
        select = self.query_one("#gpu-select", Select)
        options = s.gpu_options()
        if options and getattr(self, "_gpu_options", None) != options:
            self._gpu_options = options
            with select.prevent(Select.Changed):
                select.set_options(options)
        if s.gpu_key and select.value != s.gpu_key and options:
            with select.prevent(Select.Changed):
                select.value = s.gpu_key
        self.query_one("#fit-verdict", Static).update(self._verdict())
        self.query_one(VramBar).show(est)
        self.query_one("#plan", Static).update(self._plan())
        pending = "estimating…" if s.busy else (s.preflight_error or s.inspect_error or s.data_error)
        lr = lr_verdict(s.cfg.training.learning_rate, s.cfg.model)   # its finding's words, when it raised none
        self.query_one(Checklist).show(s.findings, pending=pending, cpu_precision=self._cpu_precision(),
                                       not_checked=self._not_checked(),
                                       ticked={"learning_rate_unusual": f"Learning rate {lr.message}"})
        self.query_one("#train-command", Static).update(self._command())
        problems = s.blockers()
        box = self.query_one("#review-problems", Static)
        # Not blockers: nothing here can change them, and the run uses the rest of the file; said, not hidden.
        left_out = [Content.styled(f"! left out of {Path(s.config_path or '').name}: {p}", "$text-warning")
                    for p in s.left_out]
        box.update(Content("\n").join([Content.styled(f"✗ {p}", "$text-error") for p in problems] + left_out))
        box.display = bool(problems or left_out)

    def shown_findings(self) -> list[Any]:
        return list(self.state.findings or [])   # the checklist holds every one

    def _verdict(self) -> Content:
        s, est = self.state, self.state.estimate
        if est is None:
            why = s.estimate_error or s.model_error or "estimating…"
            return Content.styled(f"No estimate: {why}", "$text-warning")
        if est.gpu is None:  # what Launch does here: the time and steps below are this CPU's
            return Content.styled("no GPU: the run trains on this machine's CPU (pick a card above to plan for a "
                                  "GPU pod)", "$text-warning")
        here = "" if s.gpu_detected is not None else "  (no GPU on this machine: estimating for the card picked)"
        head = (f"peak {mem_text(est.peak_allocated_gib)} allocated, {mem_text(est.device_total_gib)} on the card"
                f" of {est.gpu.memory_gib:.1f} GiB")
        if est.fits is None:
            verdict = Content.styled("no card to compare with", "$text-muted")
        elif est.fits:
            verdict = Content.styled(f"✓ fits, {est.headroom_gib:.1f} GiB headroom", "bold $text-success")
        else:
            verdict = Content.styled(
                f"✗ does not fit under {est.fit_fraction:.0%} ({est.headroom_gib:+.1f} GiB): ctrl+f auto-fits",
                "bold $text-error")
        lines = [Content.assemble(verdict, "  ", Content.styled(head + here, "$text-muted"))]
        lines += [Content.styled(f"→ {x}", "$text-warning") for x in est.suggestions]
        return Content("\n").join(lines)

    def _cpu_precision(self) -> str | None:
        """The precision the run trains in on this machine's CPU, by the plan's rule; None when a card is planned."""
        if self.state.gpu is not None:
            return None
        from engine.plan import Machine, precision_for
        return precision_for(self.state.cfg.training.precision, Machine.for_gpu(None))

    def _not_checked(self) -> dict[str, str]:
        """The GPU's checks the pre-flight could not make for the card picked, with why (it raises nothing then):
        the memory without an estimate to compare with the card; an explicit bf16 on a card whose bf16 support is
        unknown (auto needs no check: the trainer picks from the card it runs on)."""
        s = self.state
        out: dict[str, str] = {}
        if s.gpu is None:
            return out
        if s.estimate is None:
            why = s.estimate_error or s.model_error or "no estimate"
            out["memory_estimate_high"] = why.splitlines()[0]
        if s.gpu.bf16 is None and s.cfg.training.precision == "bf16":
            out["precision_unsupported"] = f"whether the {s.gpu.name} has bf16 is unknown"
        return out

    def _plan(self) -> Content:
        s, est = self.state, self.state.estimate
        t = s.cfg.training
        if est is None:
            return Content("")
        epochs = f"max_steps {t.max_steps}" if t.max_steps > 0 else f"{t.num_epochs:g} epochs"
        if est.total_steps is None:
            steps = "steps: need the dataset's size"
        elif est.steps_per_epoch is None:  # max_steps without a readable dataset: no epochs to count
            steps = f"{est.total_steps:,} steps ({epochs}; steps per epoch need the dataset)"
        else:
            steps = f"{est.total_steps:,} steps ({est.steps_per_epoch:,} per epoch, {epochs})"
        gpus = (f"{est.num_gpus} GPUs, memory per GPU" if est.num_gpus > 1 else "1 GPU" if est.gpu is not None
                else "this CPU")
        memory = f"memory {est.memory_mode}"
        if t.memory == "auto":
            memory += " (auto: the fast path does not fit)" if est.memory_mode == "lean" else " (auto)"
        if est.parallelism == "fsdp":
            memory += ", model sharded (fsdp)"
        parts = [steps, f"effective batch {s.cfg.effective_batch_size * est.num_gpus}", gpus, memory,
                 f"{est.precision}", f"{est.params_trainable:,} trainable of {est.params_total:,}"]
        time_text = self._time_text(est)
        cost = fmt_cost(est.cost)
        lines = [Content(" · ".join(parts)),
                 Content(time_text + (f" · {cost}" if cost else " · set $/h for the cost"))]
        if est.plan is not None:   # what the rules made of the fields (lean's optimizer, compiling), as the CLI says
            from engine.estimate.command import plan_words
            lines.append(Content.styled(f"runs: {plan_words(est.plan)}", "$text-muted"))
        if est.download:   # not in the time: no bandwidth is known here
            lines.append(Content.styled(est.download, "$text-warning"))
        lines += [Content.styled(f"note: {n}", "$text-muted") for n in est.notes]
        if est.approximate:
            lines.append(Content.styled("approximate: the model's shapes were partly guessed", "$text-warning"))
        return Content("\n").join(lines)

    @classmethod
    def _time_text(cls, est: Estimate) -> str:
        """The time, what it includes and where its rate comes from, with the caveat `lorapilot estimate` gives."""
        if est.time_s is None:
            return "time: no figure for this card"
        caveat = f"; {est.time_caveat}" if est.time_caveat else ""
        return (f"{fmt_duration(est.time_s)} {est.includes} ({est.time_basis}{cls._compile_words(est.compile_s)}"
                f"{caveat})")

    @staticmethod
    def _compile_words(compile_s: float) -> str:
        """A plan that compiles its decoder layers: what its time includes (nothing for an eager plan)."""
        if not compile_s:
            return ""
        from engine.estimate.timing import compile_words
        return f"; {compile_words(compile_s)}"

    def _command(self) -> Content:
        path = self.query_one("#save-path", Input).value.strip() or DEFAULT_SAVE
        from engine.train.launch import train_command
        return Content.styled(train_command(path), "bold")

    # -- inputs that are not config fields

    @on(Select.Changed, "#gpu-select")
    def _gpu(self, event: Select.Changed) -> None:
        if event.value not in (Select.NULL, GPU_LIST_PENDING):
            self.state.select_gpu(str(event.value))

    @on(Input.Changed, "#price")
    def _price(self, event: Input.Changed) -> None:
        try:
            price = float(event.value) if event.value.strip() else None
        except ValueError:
            return  # "1." on the way to "1.5": keep the last good price
        self.state.set_price(price)

    @on(Input.Changed, "#save-path")
    def _save_path(self) -> None:
        self.query_one("#train-command", Static).update(self._command())

    @on(Button.Pressed, "#save")
    def _save_pressed(self) -> None:
        self.action_save_config()

    @on(Button.Pressed, "#launch")
    def _launch_pressed(self) -> None:
        self.action_launch()

    # -- actions

    def _refuse_if_invalid(self, doing: str) -> bool:
        problems = self.state.all_problems() if doing == "save" else self.state.blockers()
        if problems:
            self.notify("\n".join(problems), title=f"Cannot {doing}: fix these first", severity="error", timeout=8)
            return True
        return False

    def action_auto_fit(self) -> None:
        s = self.state
        if s.model_info is None:
            self.notify("Auto-fit needs the model's size: pick a model that can be read.", severity="warning")
            return
        try:
            changes = s.auto_fit()
        except Exception as exc:  # noqa: BLE001 - said in a toast; say() logs a bug with its traceback
            self.notify(say(exc, "auto-fit"), title="Auto-fit failed", severity="error")
            return
        if changes:
            self.notify("\n".join(changes), title="Auto-fit applied", timeout=6)
        elif s.gpu is None:
            self.notify("No GPU: the run trains on this machine's CPU, with no card to fit. Pick a card above to "
                        "fit the run to it.", title="Auto-fit", timeout=6)
        else:
            self.notify("Already the largest micro-batch that fits.", title="Auto-fit", timeout=4)

    def action_save_config(self) -> None:
        self._save()

    def _save(self, then: Callable[[], None] | None = None) -> bool:
        """Writes the config to the save-to file (saying what happened); False where nothing was written. A config
        file there that this wizard did not open is the user's: asked first, and `then` runs once it is written."""
        if self._refuse_if_invalid("save"):
            return False
        from engine.config_edit import save_into
        from engine.errors import ConfigError
        from engine.config_edit import free_path, holds
        s = self.state
        typed = self.query_one("#save-path", Input).value.strip()
        path = Path(typed or DEFAULT_SAVE).expanduser()
        opened = bool(s.config_path) and path.resolve() == Path(str(s.config_path)).resolve()
        if s.notes and opened:
            # It opened with problems: what the wizard shows is only what it could read of it.
            self.notify(f"{path.resolve()} did not load cleanly, so it is not overwritten: save to another file "
                        "(the save-to field).", title="Not saved", severity="error", timeout=8)
            return False
        theirs = None
        if not opened and typed in ("", DEFAULT_SAVE) and path.exists() and not holds(s.cfg, path):
            # The default name, already taken by a config this wizard did not open: the user's, not ours to change.
            theirs, path = path, free_path(path)
        existed = path.exists()
        if existed and theirs is None and not opened and path.resolve() != self._agreed:
            return self._ask_to_change(path, then)
        self._agreed = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            changes = save_into(s.cfg, path)
        except ConfigError as exc:
            self.notify(str(exc), title="Not saved", severity="error", timeout=10)
            return False
        except OSError as exc:
            self.notify(f"{path}: {exc.strerror or exc}", title="Not saved", severity="error")
            return False
        s.config_path, s.notes = str(path), []  # the file now holds what the wizard shows
        full = path.resolve()  # in full: a user in tmux does not see the directory the app started in
        if theirs is not None:
            self.query_one("#save-path", Input).value = str(path)  # and the train command shown names it
            self.notify(f"{theirs.resolve()} is another config: not overwritten.\nSaved {full}",
                        title="Saved under a new name", timeout=8)
        elif not existed:
            self.notify(f"Saved {full}", timeout=5)
        elif changes:
            self.notify("\n".join(changes), title=f"Saved {full} (comments and order kept)", timeout=6)
        else:
            self.notify(f"{full} already holds these values: left as it is.", timeout=4)
        return True

    def _ask_to_change(self, path: Path, then: Callable[[], None] | None) -> bool:
        """The save-to field names a config this wizard did not open: what saving would set in it, asked (False:
        nothing written yet). A file that does not load is refused by save_into, as before; one that holds these
        values already is left as it is, unasked."""
        from engine.config_edit import save_changes
        from engine.errors import ConfigError
        from tui.screens.confirm_replace import ConfirmReplace

        try:
            changes = save_changes(self.state.cfg, path)
        except (ConfigError, OSError):
            changes = None   # save_into refuses it, saying why
        if not changes:
            self._agreed = path.resolve()
            return self._save(then)

        def answered(change: bool | None) -> None:
            if not change:
                self.notify(f"{path.resolve()} left as it is: nothing saved. Choose another file in the save-to "
                            "field.", title="Not saved", timeout=6)
                return
            self._agreed = path.resolve()
            if self._save() and then is not None:
                then()

        self.app.push_screen(ConfirmReplace(str(path.resolve()), changes), answered)
        return False

    def action_launch(self) -> None:
        if self._refuse_if_invalid("launch"):
            return
        from engine.diagnose.finding import blocking
        findings = self.state.findings or []
        if blocking(findings) and time.monotonic() > self._confirm_until:
            self._confirm_until = time.monotonic() + CONFIRM_S
            errors = [f.message for f in findings if f.severity == "error"]
            self.notify("\n".join(errors) + "\nPress ctrl+l again to launch anyway.",
                        title="The pre-flight found errors", severity="error", timeout=CONFIRM_S)
            return
        # The train command Review shows re-runs this config: write it, so the command works as shown. Where it
        # cannot be written, no run starts either: the command shown would train another config.
        if self._save(then=self._start_saved):
            self._start_saved()

    def _start_saved(self) -> None:
        """Launch, once the config Review names is written."""
        self.query_one("#launch", Button).disabled = True
        self.notify("Starting the run…", timeout=3)
        name = Path(self.query_one("#save-path", Input).value.strip() or DEFAULT_SAVE).stem
        self._start(self.state.cfg, name)

    @work(thread=True, exclusive=True, group="wizard-launch")
    def _start(self, cfg: Config, name: str) -> None:
        from engine.train.launch import start_run
        try:
            handle = start_run(cfg, config_name=name)
        except Exception as exc:  # noqa: BLE001 - a bad model path or unreadable data: say it, stay here
            self.app.call_from_thread(self._launch_failed, exc)
            return
        self.app.call_from_thread(self._launched, handle)

    def _launch_failed(self, exc: Exception) -> None:
        self.query_one("#launch", Button).disabled = False
        self.notify(say(exc, "starting the run"), title="The run did not start", severity="error", timeout=10)

    def _launched(self, handle: RunHandle) -> None:
        self.query_one("#launch", Button).disabled = False
        self.state.last_run = handle
        self.app.open_monitor(handle.run_dir)
