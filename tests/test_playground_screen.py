"""The playground against a real finished demo run: both models answer, bad settings are refused inline."""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from conftest import hold_run_lock, unwrapped
from tui.app import LorapilotApp
from tui.widgets.answer_pane import AnswerPane

SIZE = (100, 32)


async def wait_for(pilot, condition, limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"no {what} after {limit} s")


async def type_text(pilot, text: str) -> None:
    await pilot.press(*[("space" if c == " " else c) for c in text])


@pytest.mark.timeout(300)  # a hang guard on the body (the shared run is trained before, outside it)
async def test_prompt_streams_the_base_then_the_adapter(finished_demo_run):
    app = LorapilotApp(start="playground", run_dir=str(finished_demo_run))
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert type(screen).__name__ == "PlaygroundScreen"
        # The prompt has the focus at once, and keys echo while the model loads in its helper process.
        start = time.monotonic()
        await type_text(pilot, "Add 2 and 3.")
        echoed_s, echoed_while_loading = time.monotonic() - start, not screen.loaded
        # A load in the app's own process would hold the keys until the model was in (the imports alone take
        # 7 s on a 2-core machine), so they could never echo while it loads. Keys that echoed before the load
        # finished show it happens elsewhere whatever the machine's load; on a quiet machine where the helper
        # won the race, 12 keys in well under the in-process import time say the same.
        assert echoed_while_loading or echoed_s < 4.0, echoed_s
        assert screen.query_one("#prompt").text == "Add 2 and 3."
        await pilot.press("enter")  # sent before the model is loaded: the answers wait for it
        base, adapter = screen.pane("base"), screen.pane("adapter")
        await wait_for(pilot, lambda: base.state in ("generating", "done", "error"), 180, "base answer starting")
        await wait_for(pilot, lambda: adapter.state in ("done", "error"), 120, "adapter answer")
        assert base.state == "done" and adapter.state == "done", (base.border_subtitle, adapter.border_subtitle)
        assert base.text.strip() and adapter.text.strip()
        assert base.text.strip() != adapter.text.strip()
        assert "done in" in str(adapter.border_subtitle)
        assert screen.query_one("#prompt").text == "Add 2 and 3."  # kept for the next try
        app.exit()


async def test_bad_temperature_is_an_inline_error_and_nothing_typed_is_lost(finished_demo_run):
    app = LorapilotApp(start="playground", run_dir=str(finished_demo_run))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert screen.has_class("-stacked")
        await type_text(pilot, "Say hello")
        temperature = screen.query_one("#sampling-temperature")
        temperature.focus()
        await pilot.press("end", "ctrl+u", "-", "1")
        await pilot.pause(0.1)
        error = screen.query_one("#setting-temperature .setting-error")
        assert error.display and ">= 0" in str(error.render())
        await pilot.press("ctrl+r")
        await pilot.pause(0.1)
        # Refused: nothing asked, the bad value and the prompt both as typed, the bad field focused.
        assert all(p.state in ("waiting", "idle") for p in screen.query(AnswerPane))
        assert temperature.value == "-1" and app.focused is temperature
        assert screen.query_one("#prompt").text == "Say hello"
        await pilot.press("end", "ctrl+u", "0", ".", "7")
        await pilot.pause(0.1)
        assert not error.display
        app.exit()


async def test_the_monitor_opens_the_playground_on_a_finished_run_and_escape_returns(finished_demo_run):
    app = LorapilotApp(start="monitor", run_dir=str(finished_demo_run))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: type(app.screen).__name__ == "MonitorScreen", 30, "monitor")
        assert app.screen.check_action("playground", ()) is True
        await pilot.press("p")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "PlaygroundScreen", 30, "playground")
        await pilot.press("escape")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "MonitorScreen", 30, "monitor again")
        app.exit()


def test_playground_verb_refuses_a_run_without_an_adapter(tmp_path, capsys):
    from tui.entry import main

    (tmp_path / "config.yaml").write_text("model: demo\n")   # a run, not finished
    assert main(["playground", str(tmp_path)]) == 2
    assert "no adapter/ yet" in unwrapped(capsys.readouterr().err)


@pytest.mark.parametrize("state", ["stopped", "failed"])
def test_playground_verb_on_a_run_that_will_not_finish_says_to_resume_it_not_to_wait(tmp_path, capsys, state):
    """A stopped run (the monitor's stop key) got 'no adapter/ yet (the run has not finished)' and 'watch it with
    lorapilot monitor ...; the playground opens once it is done': it never would. It is told to resume it now, as
    chat and export tell it."""
    from tui.entry import main

    (tmp_path / "config.yaml").write_text("model: demo\n")
    (tmp_path / "status.json").write_text(json.dumps({"state": state, "step": 11}))
    assert main(["playground", str(tmp_path)]) == 2
    err = unwrapped(capsys.readouterr().err)
    assert f"no adapter/ (the run is {state} at step 11)" in err and "lorapilot train --resume" in err, err
    assert "lorapilot monitor" not in err


def _still_training(finished_demo_run, run: Path, *, step: int = 34, checkpoints: bool = True) -> Path:
    """The shared demo run as it was while training: no final adapter yet, this process as its live trainer."""
    from engine.rundir import process_start

    shutil.copytree(finished_demo_run, run, ignore=shutil.ignore_patterns("adapter", "trainer.lock"))
    if not checkpoints:
        shutil.rmtree(run / "checkpoints")
    metrics = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    (run / "metrics.jsonl").write_text("".join(ln for ln in metrics if json.loads(ln)["step"] <= step))
    status = json.loads((run / "status.json").read_text())
    status.update(state="training", step=step, pid=os.getpid(), pid_start=process_start(os.getpid()))
    (run / "status.json").write_text(json.dumps(status))
    return hold_run_lock(run)


async def _monitor_then_p(app, pilot) -> None:
    await wait_for(pilot, lambda: type(app.screen).__name__ == "MonitorScreen"
                   and app.screen.history.state == "training", 30, "monitor of a training run")
    await pilot.press("p")


@pytest.mark.timeout(300)
async def test_p_while_training_chats_with_the_newest_checkpoint(finished_demo_run, tmp_path):
    run = _still_training(finished_demo_run, tmp_path / "demo-training")
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=SIZE) as pilot:
        await _monitor_then_p(app, pilot)
        await wait_for(pilot, lambda: type(app.screen).__name__ == "PlaygroundScreen", 30, "playground")
        screen = app.screen
        assert Path(screen.checkpoint) == run / "checkpoints" / "checkpoint-40"  # the newest of 20 and 40
        assert screen.pane("adapter").border_title == "With the checkpoint at step 40"
        # The checkpoint's adapter really loads on the base (a Trainer checkpoint, not the final adapter/).
        await wait_for(pilot, lambda: screen.loaded or screen.pane("adapter").state == "error", 180, "model loaded")
        assert screen.loaded, screen.pane("adapter").border_subtitle
        assert "checkpoint at step 40" in str(screen.query_one("#pg-status").render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "MonitorScreen", 30, "monitor again")
        app.exit()


async def test_p_while_training_without_room_on_the_gpu_says_the_numbers(finished_demo_run, tmp_path, monkeypatch):
    from engine.gpu import GpuSample

    # The trainer holds all but 0.2 GiB of the card: not enough for a second copy even of the tiny demo model.
    monkeypatch.setattr("engine.gpu.gpu_state", lambda: ("ok", "1 GPU"))
    monkeypatch.setattr("engine.gpu.sample_gpus", lambda: [GpuSample(0, "NVIDIA H200", 140.2, 140.4)])
    run = _still_training(finished_demo_run, tmp_path / "demo-training")
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: type(app.screen).__name__ == "MonitorScreen" and app.screen.history.gpus,
                       30, "a GPU sample")
        await _monitor_then_p(app, pilot)
        said = lambda: [n for n in app._notifications if "GiB" in n.message]  # noqa: E731
        await wait_for(pilot, said, 30, "the refusal")
        assert type(app.screen).__name__ == "MonitorScreen"
        assert said()[0].title == "Not enough GPU memory for checkpoint-40"
        assert "GPU 0 has 0.2 GiB free (140.2 of 140.4 GiB in use)" in said()[0].message
        app.exit()


async def test_p_while_training_before_the_first_checkpoint_says_when(finished_demo_run, tmp_path):
    run = _still_training(finished_demo_run, tmp_path / "demo-training", step=12, checkpoints=False)
    app = LorapilotApp(start="monitor", run_dir=str(run))
    async with app.run_test(size=SIZE) as pilot:
        await _monitor_then_p(app, pilot)
        said = lambda: [n.message for n in app._notifications if "checkpoint" in n.message]  # noqa: E731
        await wait_for(pilot, said, 30, "the answer")
        assert type(app.screen).__name__ == "MonitorScreen"
        assert "the first comes at step 20 (save_steps), at step 12/40 now" in said()[0]
        app.exit()


def test_a_second_model_fits_beside_the_trainer_only_with_room_for_it():
    from engine.config import Config
    from engine.gpu import GpuSample
    from engine.playground import no_room_to_chat

    cfg = Config()
    cfg.model = "meta-llama/Llama-2-7b-hf"  # a preset: its shapes without the hub
    assert no_room_to_chat(cfg, []) is None  # no GPU: the CPU's memory, not checked here
    assert no_room_to_chat(cfg, [GpuSample(0, "NVIDIA H100 80GB HBM3", 20.0, 79.6)]) is None
    why = no_room_to_chat(cfg, [GpuSample(0, "NVIDIA H100 80GB HBM3", 75.0, 79.6)])
    assert "GPU 0 has 4.6 GiB free (75.0 of 79.6 GiB in use)" in why
    need = float(why.split("about ")[1].split(" GiB")[0])
    assert 5.0 < need < 10.0  # 4-bit 7B weights (~3.6 GiB), fp32 embeddings, a 4,096-token cache, a context


async def test_the_status_line_fits_80_columns_and_drops_the_load_time_first(tmp_path, monkeypatch):
    """At 80x24 the demo's status line ran out at 'on cpu, loaded in' (its number cut off): the load time, the
    least of the line, shows only where it fits; a name too long for the line ends in an ellipsis."""
    from tui.models.playground_model import PlaygroundModel

    def status_line(app) -> str:
        return app.screen.query_one("#pg-status").render_line(0).text

    run = tmp_path / "lorapilot-20261204-160046"  # a run named as the wizard names it
    (run / "adapter").mkdir(parents=True)
    model = {"model": "lorapilot-demo"}
    monkeypatch.setattr(PlaygroundModel, "load", lambda self: {**model, "device": "cpu", "load_s": 2.34})
    monkeypatch.setattr(PlaygroundModel, "close", lambda self: None)
    app = LorapilotApp(start="playground", run_dir=str(run))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.screen.loaded, 10, "model loaded")
        await pilot.pause(0.05)
        assert status_line(app).strip() == "base lorapilot-demo · adapter lorapilot-20261204-160046 · on cpu"
        await pilot.resize_terminal(120, 24)
        await pilot.pause(0.05)
        assert status_line(app).rstrip().endswith("· on cpu, loaded in 2.3 s")
        app.exit()

    model["model"] = "meta-llama/Meta-Llama-3.1-8B-Instruct"
    app = LorapilotApp(start="playground", run_dir=str(run))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.screen.loaded, 10, "model loaded")
        await pilot.pause(0.05)
        line = status_line(app)
        assert line.rstrip().endswith("…") and "loaded in" not in line, line
        app.exit()


class _FakeModel:
    """PlaygroundModel's interface without its helper process: a chat run's answers, each side's own, and what
    each ask was given (the Playground behind it is tested against training in tests/test_served_prompt.py)."""

    def __init__(self, info: dict):
        self.info, self.asks = info, []

    def install(self, monkeypatch):
        from tui.models.playground_model import PlaygroundModel

        fake = self
        monkeypatch.setattr(PlaygroundModel, "load", lambda self: setattr(self, "info", fake.info) or fake.info)
        monkeypatch.setattr(PlaygroundModel, "wait_ready", lambda self, timeout=None: None)
        monkeypatch.setattr(PlaygroundModel, "close", lambda self: None)
        monkeypatch.setattr(PlaygroundModel, "ask", lambda self, text, **kw: fake.ask(text, **kw))

    def ask(self, text, *, adapter, cancelled, dropped, history=(), system="", **values):
        self.asks.append((text, adapter, list(history), system))
        if adapter and len(history) >= 1:
            dropped(1)  # as if the oldest turn no longer fitted beside max_new_tokens
        yield f"{'adapter' if adapter else 'base'} answer {len(history) + 1}"


def _chat_run(tmp_path) -> Path:
    run = tmp_path / "chat-run"
    (run / "adapter").mkdir(parents=True)
    return run


CHAT_INFO = {"model": "Qwen/Qwen2.5-0.5B-Instruct", "device": "cpu", "load_s": 1.0, "format": "chat", "system": "",
             "template_system": "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
             "context": 2048}


@pytest.fixture
def chat_playground(tmp_path, monkeypatch):
    """The playground on a chat run, its model a _FakeModel of `info`, loaded:
    `async with chat_playground(info, size) as (model, app, pilot, screen):`; the app exits at the block's end."""

    @asynccontextmanager
    async def open_playground(info: dict = CHAT_INFO, size: tuple[int, int] = (80, 24)):
        model = _FakeModel(info)
        model.install(monkeypatch)
        app = LorapilotApp(start="playground", run_dir=str(_chat_run(tmp_path)))
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda: app.screen.loaded, 10, "model loaded")
            yield model, app, pilot, app.screen
            app.exit()
    return open_playground


@pytest.mark.parametrize("note", [None, "Qwen/Qwen2.5-0.5B-Instruct: the hub is out of reach and the Hugging Face "
                                          "cache has no generation_config.json naming its stops"])
async def test_offline_without_the_published_stops_the_playground_says_so(chat_playground, note):
    """A checkpoint's tokenizer is the base model's: offline without its generation_config.json in the cache, the
    stops its makers publish are unknown (engine.model.load_tokenizer; tests/test_stop_tokens.py): said once loaded."""
    async with chat_playground({**CHAT_INFO, "stops_note": note}) as (model, app, pilot, screen):
        await pilot.pause(0.05)
        shown = [n for n in app._notifications if n.title == "Where answers stop"]
        assert [(n.message, n.severity) for n in shown] == ([(note, "warning")] if note else [])


async def _ask(pilot, screen, text: str) -> None:
    await type_text(pilot, text)
    await pilot.press("enter")
    await wait_for(pilot, lambda: not screen.generating and screen.pane("adapter").state == "done", 10, "answers")
    await pilot.pause(0.05)


async def test_a_chat_run_holds_a_conversation_per_side_and_ctrl_n_starts_anew(chat_playground):
    async with chat_playground() as (model, app, pilot, screen):
        await pilot.pause(0.05)
        system_line = lambda: screen.query_one("#pg-system").render_line(0).text  # noqa: E731
        # rows with different system prompts trained with none: the template's own is what the model reads
        assert system_line().startswith('in use: none, so the template writes its own: "You are Qwen, created by')
        assert system_line().rstrip().endswith("…")  # cut to the width
        base, adapter = screen.pane("base"), screen.pane("adapter")
        await _ask(pilot, screen, "What color is a lemon?")
        assert base.history == [("What color is a lemon?", "base answer 1")]
        assert adapter.history == [("What color is a lemon?", "adapter answer 1")]
        assert screen.query_one("#prompt").text == ""  # kept in the conversation: free for the follow-up
        assert screen.query_one("#prompt").border_title == "Prompt · turn 2"
        await _ask(pilot, screen, "And a tomato?")
        # each side was asked after its own history, with training's system prompt (none typed)
        assert model.asks[2:] == [("And a tomato?", False, [("What color is a lemon?", "base answer 1")], ""),
                                  ("And a tomato?", True, [("What color is a lemon?", "adapter answer 1")], "")]
        assert base.history[1] == ("And a tomato?", "base answer 2")
        assert adapter.history[1] == ("And a tomato?", "adapter answer 2")
        shown = str(adapter.query_one(".answer-text").render())
        assert "› What color is a lemon?" in shown and "adapter answer 1" in shown and "adapter answer 2" in shown
        assert [n for n in app._notifications if "the oldest turn of this conversation no longer fit" in n.message]
        screen.query_one("#system-prompt").focus()
        await type_text(pilot, "Be brief.")
        assert system_line().strip() == 'in use: yours: "Be brief."'
        await pilot.press("ctrl+n")
        await pilot.pause(0.05)
        assert base.history == [] and adapter.history == []
        assert screen.query_one("#prompt").border_title == "Prompt"
        assert "a new conversation" in str(base.border_subtitle)
        await _ask(pilot, screen, "Hi")
        assert model.asks[-1] == ("Hi", True, [], "Be brief.")


async def test_an_alpaca_run_asks_each_prompt_alone_and_says_why(chat_playground):
    # the system prompt every training row had, as the run's data wrote it (a terminal escape included)
    info = {**CHAT_INFO, "format": "alpaca", "template_system": "", "system": "Be\x1b[2J terse."}
    async with chat_playground(info) as (model, app, pilot, screen):
        await _ask(pilot, screen, "Add 2 and 3.")
        await pilot.press("enter")  # the same prompt again: asked alone
        await wait_for(pilot, lambda: len(model.asks) == 4 and not screen.generating, 10, "second answers")
        assert [history for _, _, history, _ in model.asks] == [[], [], [], []]
        assert screen.pane("adapter").history == []
        assert screen.query_one("#prompt").border_title == \
            "Prompt · alpaca rows have no multi-turn layout: one question at a time"
        assert screen.query_one("#prompt").text == "Add 2 and 3."  # kept for the next try
        assert screen.check_action("new_conversation", ()) is None
        line = screen.query_one("#pg-system").render_line(0).text
        assert line.strip() == 'in use: training\'s (every row had it): "Be\\x1b[2J terse."', line
        assert "no multi-turn layout" in screen.why_not("new_conversation")


async def test_an_answer_stopped_half_way_is_not_kept_in_the_conversation(chat_playground, monkeypatch):
    """Escape stops the adapter's answer after the base model's was done: neither side keeps the question (a history
    with a question only one side answered would feed the sides different conversations)."""
    import time as clock

    async with chat_playground() as (model, app, pilot, screen):
        await _ask(pilot, screen, "What color is a lemon?")

        def slow(text, *, adapter, cancelled, dropped, **kw):
            yield "a long" if adapter else "base answer 2"
            if not adapter:
                return
            while not cancelled():
                clock.sleep(0.01)
        monkeypatch.setattr(model, "ask", slow)
        await type_text(pilot, "And a tomato?")
        await pilot.press("enter")
        base, adapter = screen.pane("base"), screen.pane("adapter")
        await wait_for(pilot, lambda: adapter.text == "a long", 10, "the adapter's first piece")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not screen.generating, 10, "the stop")
        await pilot.pause(0.1)
        assert base.state == "done" and "not kept in the conversation" in str(adapter.border_subtitle)
        assert base.history == [("What color is a lemon?", "base answer 1")]
        assert adapter.history == [("What color is a lemon?", "adapter answer 1")]
        assert screen.query_one("#prompt").text == "And a tomato?"  # there to ask again


async def test_an_answer_is_drawn_literally_and_kept_as_the_model_wrote_it(chat_playground, monkeypatch):
    """An answer is plain text: markup in it (balanced or not) shows as written and crashes nothing, a control
    character shows escaped; the history, fed back to the model with the follow-up, keeps what it wrote."""
    said = "[bold]x[/bold] and [red \x1b[2Jgone"
    async with chat_playground() as (model, app, pilot, screen):
        monkeypatch.setattr(model, "ask",
                            lambda text, *, history=(), **kw: model.asks.append(list(history)) or iter([said]))
        adapter = screen.pane("adapter")
        await _ask(pilot, screen, "Hi")
        shown = str(adapter.query_one(".answer-text").render())
        assert "[bold]x[/bold] and [red \\x1b[2Jgone" in shown and "\x1b" not in shown, shown
        assert adapter.history == [("Hi", said)]
        await _ask(pilot, screen, "Again")
        assert model.asks[-1] == [("Hi", said)]  # the adapter's follow-up, after its history as written
        shown = str(adapter.query_one(".answer-text").render())
        assert shown.count("[bold]x[/bold] and [red \\x1b[2Jgone") == 2 and "\x1b" not in shown, shown


async def test_a_system_prompt_the_template_has_no_place_for_is_refused_in_words_before_asking(tmp_path, monkeypatch):
    """Gemma 2's and Mistral v0.2's templates raise on a system turn and training refuses a row with one: a system
    prompt typed in the playground is refused before anything is asked, naming the field, not with the template's
    exception text (the engine's side: tests/test_served_prompt.py). Typed while the model loads, the field stays
    open to clear; typed into nothing, the field is closed and the line says why."""
    import threading

    from tui.models.playground_model import PlaygroundModel

    why = "this model's chat template has no place for a system prompt (training refuses a row with one)"
    model = _FakeModel({**CHAT_INFO, "template_system": "", "system_refused": why})
    model.install(monkeypatch)
    loading = threading.Event()
    monkeypatch.setattr(PlaygroundModel, "load", lambda self: loading.wait(10) and setattr(self, "info", model.info)
                        or model.info)
    app = LorapilotApp(start="playground", run_dir=str(_chat_run(tmp_path)))
    async with app.run_test(size=(100, 24)) as pilot:
        screen = app.screen
        system_line = lambda: screen.query_one("#pg-system").render_line(0).text.strip()  # noqa: E731
        field = screen.query_one("#system-prompt")
        await pilot.pause(0.05)
        # before the model is in, what it will be, in words ("which one training used: read once the model is in")
        assert system_line() == "in use: the one training used (known once the model loads)", system_line()
        field.focus()
        await type_text(pilot, "Be brief.")
        loading.set()
        await wait_for(pilot, lambda: screen.loaded, 10, "model loaded")
        await pilot.pause(0.05)
        assert not field.disabled and system_line().startswith("✗ leave it empty: this model's chat template has no place")
        screen.query_one("#prompt").focus()
        await type_text(pilot, "Hi")
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert model.asks == [] and app.focused is field
        said = [n for n in app._notifications if n.title == "Not asked"]
        assert said and said[0].message.startswith(f"system prompt: {why}."), said
        field.value = ""
        await pilot.pause(0.05)
        assert system_line().startswith("in use: none, as this model's chat template has no place for"), system_line()
        assert not field.disabled  # typed while loading: left open to clear
        screen.query_one("#prompt").focus()
        await _ask(pilot, screen, "")  # the prompt typed is still there
        assert model.asks[-1] == ("Hi", True, [], "")
        app.exit()
    app = LorapilotApp(start="playground", run_dir=str(tmp_path / "chat-run"))
    async with app.run_test(size=(100, 24)) as pilot:  # nothing typed while it loaded: the field is closed
        await wait_for(pilot, lambda: app.screen.loaded, 10, "model loaded")
        field = app.screen.query_one("#system-prompt")
        assert field.disabled and field.placeholder == "not used (the line below says why)"
        app.exit()


async def test_what_was_typed_is_drawn_as_typed_and_fed_as_typed(chat_playground):
    """Markup in the question, a sampling setting or the system prompt is text: shown as typed (a stray `[/]` in
    a setting raised a MarkupError where its error line and the refusal's toast drew it); the question's control
    characters show escaped, as an answer's do, and the model is fed the question as it was typed."""
    from tui.widgets.prompt_box import PromptBox

    question = "[bold]x[/] [link=x]y [red]\x1b[2J"
    async with chat_playground(size=(100, 24)) as (model, app, pilot, screen):
        screen.query_one(PromptBox).text = question
        screen.query_one(PromptBox).focus()
        await _ask(pilot, screen, "")
        shown = str(screen.pane("adapter").query_one(".answer-text").render())
        assert "› [bold]x[/] [link=x]y [red]\\x1b[2J" in shown and "\x1b" not in shown, shown
        assert [text for text, *_ in model.asks] == [question, question]
        screen.query_one("#system-prompt").focus()
        await type_text(pilot, "[/]")
        assert screen.query_one("#pg-system").render_line(0).text.strip() == 'in use: yours: "[/]"'
        screen.query_one("#sampling-temperature").focus()
        await pilot.press("end", "ctrl+u", "[", "/", "]")
        await pilot.pause(0.1)
        error = screen.query_one("#setting-temperature .setting-error")
        assert error.display and str(error.render()) == "✗ [/]: a number >= 0 (0 = greedy)"
        await pilot.press("ctrl+r")
        await pilot.pause(0.2)
        said = [n for n in app._notifications if n.title == "Fix the sampling settings first"]
        assert said and said[0].message == "[/]: a number >= 0 (0 = greedy)" and not said[0].markup


async def test_a_system_prompt_the_template_left_out_of_training_is_said_to_be_none(chat_playground):
    """Mistral v0.3's template writes the system message into a last user turn only: rows that all had one trained
    without it, and the playground asks with none by default. The line in use says so, not "training's"."""
    info = {**CHAT_INFO, "model": "mistralai/Mistral-7B-Instruct-v0.3", "template_system": "", "system": "Be terse.",
            "system_left_out": True}
    async with chat_playground(info, size=(200, 24)) as (model, app, pilot, screen):
        await pilot.pause(0.05)
        line = lambda: screen.query_one("#pg-system").render_line(0).text.strip()  # noqa: E731
        assert line() == ('in use: none, as in training: the chat template left the rows\' "Be terse." out of every '
                          'row that ends with an answer')
