"""The screens a newcomer sees first, pinned at 80x24 (a tmux pane) and 160x48: a layout that cuts a key value,
a footer key or a column fails here, not for a user. Update on purpose with `pytest --snapshot-update`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "screenshots"))
from monitor_fakerun import make_run  # noqa: E402

from tui.app import LorapilotApp  # noqa: E402
from wizard_pilot import settle  # noqa: E402

pytestmark = pytest.mark.timeout(300)
SIZES = [(80, 24), (160, 48)]


@pytest.fixture(autouse=True)
def no_gpu_here(monkeypatch):
    """The same picture on a laptop and on a GPU pod: no card detected, so the plan is this machine's CPU."""
    import tui.models.wizard_engine_calls as engine_calls

    def presets_only():
        from engine.estimate import list_gpus
        return list_gpus(), None

    monkeypatch.setattr(engine_calls, "detect_gpus", presets_only)


def _wizard_at(step_keys: tuple[str, ...]):
    async def run_before(pilot) -> None:
        await settle(pilot.app, pilot)
        for key in step_keys:
            await pilot.press(key)
            await settle(pilot.app, pilot)
        from textual.widgets import Input
        for editor in pilot.app.screen.query(Input):  # a blinking cursor would make the picture a coin toss
            editor.cursor_blink = False
        await pilot.pause(0.2)
    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_model_step(snap_compare, size, demo_model_dir):
    assert snap_compare(LorapilotApp(), terminal_size=size, run_before=_wizard_at(()))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_review_step(snap_compare, size, demo_model_dir):
    assert snap_compare(LorapilotApp(), terminal_size=size, run_before=_wizard_at(("ctrl+n", "ctrl+n", "ctrl+n")))


@pytest.fixture
def fixed_machine(monkeypatch):
    """The monitor samples this machine (RAM, CPU, GPUs): a fixed sample, the same picture everywhere."""
    from engine import gpu, system

    sample = system.MachineSample(cpu_pct=12.0, cpu_count=8, ram_used_gib=6.5, ram_total_gib=31.3)
    monkeypatch.setattr(system, "machine_sample", lambda: sample)
    monkeypatch.setattr(system.ProcessSampler, "sample", lambda self, pid: None)
    monkeypatch.setattr(gpu, "gpu_state", lambda: ("no_gpu", "no NVIDIA GPU on this machine"))
    monkeypatch.setattr(gpu, "sample_gpus", lambda: [])


@pytest.fixture
def fixed_clock(monkeypatch):
    """The monitor's ages (the last checkpoint's "2h ago") against a fixed now: two hours after the runs that
    make_run(now=1.7e9) writes, on every day the suite runs."""
    from tui.widgets import progress_panel

    monkeypatch.setattr(progress_panel, "wall_clock", lambda: 1.7e9 + 2 * 3600)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_monitor_of_a_finished_run(snap_compare, size, tmp_path, fixed_machine, fixed_clock):
    # A fixed clock: the run ended at a known time, so ages and durations read the same on every machine.
    run = make_run(tmp_path / "demo-20261203-101500", state="done", steps_done=1200, max_steps=1200, now=1.7e9)

    async def run_before(pilot) -> None:
        for _ in range(200):
            await pilot.pause(0.05)
            if pilot.app.screen.history.state == "done":
                break
        await pilot.pause(3.5)  # the charts draw at most every 3 s

    assert snap_compare(LorapilotApp(start="monitor", run_dir=str(run)), terminal_size=size, run_before=run_before)


def test_playground_in_a_conversation(snap_compare, tmp_path, monkeypatch):
    """The playground at 80x24 (the panes stacked) after one question of a chat run, each side's answer under it:
    a fake model (tests/test_playground_screen.py's), a fixed clock for the "done in" of the borders."""
    from types import SimpleNamespace

    from test_playground_screen import CHAT_INFO, _chat_run, _FakeModel, type_text

    from tui.widgets import answer_pane

    _FakeModel(CHAT_INFO).install(monkeypatch)
    monkeypatch.setattr(answer_pane, "time", SimpleNamespace(monotonic=lambda: 100.0))

    async def run_before(pilot) -> None:
        screen = pilot.app.screen
        for _ in range(200):
            await pilot.pause(0.05)
            if screen.loaded:
                break
        await type_text(pilot, "What color is a lemon?")
        await pilot.press("enter")
        for _ in range(200):
            await pilot.pause(0.05)
            if not screen.generating and screen.pane("adapter").state == "done":
                break
        await type_text(pilot, "And a tomato?")  # the follow-up, typed, not sent
        from textual.widgets import Input, TextArea
        for editor in [*screen.query(Input), *screen.query(TextArea)]:  # a blinking cursor: a coin toss
            editor.cursor_blink = False
        await pilot.pause(0.2)

    app = LorapilotApp(start="playground", run_dir=str(_chat_run(tmp_path)))
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_export_notes_at_80x24(snap_compare, tmp_path, fixed_machine, fixed_clock):
    """What an export from the monitor says (the lines `lorapilot export --for vllm` prints for an NF4 run): the long
    note about the unquantised base wraps in a dialog that fits a tmux pane, its lines scrolled, never cut."""
    from engine.export import written_line
    from engine.export.vllm import served_base_note
    from tui.screens.export_done import ExportDone

    run = make_run(tmp_path / "demo-20261203-101500", state="done", steps_done=1200, max_steps=1200, now=1.7e9)
    out = Path("/home/me/demo-20261203-101500-vllm")
    lines = [f"serve it: `{out / 'serve.sh'}` (vllm serve, the adapter as model 'demo-20261203-101500'; the line it "
             "runs is in README.md)", f"note: {served_base_note('nf4', run)}", written_line("vllm", out)]
    lines[1] = lines[1].replace(str(run), "runs/demo-20261203-101500")  # tmp_path: not the same on every machine

    async def run_before(pilot) -> None:
        for _ in range(200):
            await pilot.pause(0.05)
            if pilot.app.screen.history.state == "done":
                break
        await pilot.pause(3.5)  # the charts behind the dialog draw at most every 3 s
        await pilot.app.push_screen(ExportDone("vllm", lines))
        await pilot.pause(0.3)

    assert snap_compare(LorapilotApp(start="monitor", run_dir=str(run)), terminal_size=(80, 24),
                        run_before=run_before)


def test_every_snapshot_file_is_one_a_test_here_compares(request):
    """A serial run fails on a snapshot file no test takes any more (syrupy's unused-snapshot check), but under
    pytest-xdist, the README's command, syrupy skips that check: this test keeps it. Each of this file's tests
    that compares a snapshot, collected again here whatever -k selected."""
    compared = {item.name for item in request.node.parent.collect()
                if "snap_compare" in getattr(item, "fixturenames", ())}
    files = {p.stem for p in (Path(__file__).parent / "__snapshots__" / Path(__file__).stem).glob("*.svg")}
    assert compared and files - compared == set(), "snapshot files no test compares: remove them"
