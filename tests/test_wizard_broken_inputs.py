"""Each wizard input missing or broken, walked through every step to Review: no screen crashes, Review names
the problem and Launch refuses, and what the user typed is still there."""

from __future__ import annotations

import pytest

from tui.app import LorapilotApp
from wizard_pilot import paste_into, settle, shown, type_into

SIZE = (80, 24)


def _broken_jsonl(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"instruction": "hi", "output": "there"}\n{"instruction": \n', encoding="utf-8")
    return str(path)


def _empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("", encoding="utf-8")
    return str(path)


# (the step the input is on, its field, the text typed (or a maker of it), what Review must name)
CASES = [
    ("model", "#field-model", "", "model"),
    ("model", "#field-model", "/nowhere/model", "/nowhere/model"),
    ("dataset", "#field-dataset-path", "data/train.jsonl", "data/train.jsonl"),  # the README's example path
    ("dataset", "#field-dataset-path", "", "dataset.path"),
    ("dataset", "#field-dataset-path", _broken_jsonl, "broken.jsonl"),
    ("dataset", "#field-dataset-path", _empty_file, "empty.jsonl"),
    ("dataset", "#field-dataset-validation_split", "0.9.1", "validation_split"),
    ("dataset", "#field-training-max_seq_length", "", "max_seq_length"),
    ("hyperparams", "#field-training-learning_rate", "abc", "learning_rate"),
    ("hyperparams", "#field-training-micro_batch_size", "0", "micro_batch_size"),
    # markup in what was typed is text: shown as typed, never read as styles (nor a crash on a stray [/])
    ("dataset", "#field-dataset-path", "d/[v2]/[link=x]t.jsonl", "d/[v2]/[link=x]t.jsonl"),
    ("hyperparams", "#field-training-learning_rate", "[/]2e-4", "[/]2e-4"),
]


@pytest.mark.parametrize("step, field, text, named", CASES,
                         ids=[f"{c[0]}-{c[1].removeprefix('#field-')}-{c[2] if isinstance(c[2], str) else c[2].__name__}"
                              for c in CASES])
async def test_a_missing_or_broken_input_reaches_review_without_a_crash(tmp_path, monkeypatch, demo_model_dir,
                                                                       step, field, text, named):
    monkeypatch.setenv("LORAPILOT_RUNS", str(tmp_path / "runs"))
    text = text(tmp_path) if callable(text) else text
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        for _ in range(("model", "dataset", "hyperparams").index(step)):
            await pilot.press("ctrl+n")
        await settle(app, pilot)
        if len(text) > 20:
            await paste_into(pilot, field, text)
        else:
            await type_into(pilot, field, text)
        await settle(app, pilot)
        # Every later step paints with the input broken, then Review.
        while type(app.screen).__name__ != "ReviewScreen":
            await pilot.press("ctrl+n")
            await settle(app, pilot)
        problems = str(app.screen.query_one("#review-problems").render())
        assert named in problems
        await pilot.press("ctrl+l")
        await pilot.pause(0.3)
        assert type(app.screen).__name__ == "ReviewScreen"
        assert not (tmp_path / "runs").exists()  # nothing launched
        # Back to where it was typed: the text is as typed.
        while type(app.screen).__name__ != {"model": "ModelScreen", "dataset": "DatasetScreen",
                                            "hyperparams": "HyperparamsScreen"}[step]:
            await pilot.press("escape")
            await pilot.pause(0.05)
        assert app.screen.query_one(field).value == text
        app.exit()


@pytest.fixture
def held_tokenizer(monkeypatch):
    """The wizard's real tokenizing, held while the returned gate is clear (a slow tokenizer, a hub download)."""
    import threading

    import tui.wizard_state as wizard_state

    real, gate = wizard_state.inspect_data, threading.Event()
    gate.set()

    def held(cfg, model):
        gate.wait(timeout=600)  # a hang guard only
        return real(cfg, model)

    monkeypatch.setattr(wizard_state, "inspect_data", held)
    return gate


async def test_a_stale_model_error_leaves_the_dataset_tab_once_the_model_is_fixed(held_tokenizer, demo_model_dir):
    """The tokenizer error of a model that could not be read goes when a readable model is in, not when the
    data has been tokenized again with it (a big tokenizer or a hub download: a minute, and the old error said
    the data was broken all that time)."""
    import time

    gate = held_tokenizer
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        s = app.wizard
        await settle(app, pilot)
        await type_into(pilot, "#field-model", "/nowhere/model")
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert "/nowhere/model" in shown(app, "#data-problems")

        gate.clear()
        try:  # released whatever happens: a held worker thread would keep the test from ending
            await pilot.press("escape")
            await type_into(pilot, "#field-model", "lorapilot-demo")
            deadline = time.monotonic() + 300
            while s.busy_with("model") and time.monotonic() < deadline:
                await pilot.pause(0.05)
            await pilot.press("ctrl+n")
            await pilot.pause(0.1)
            assert s.model_error is None and s.busy_with("data")  # the new tokenizer is still on its way
            assert "/nowhere/model" not in shown(app, "#data-problems")
        finally:
            gate.set()
        await settle(app, pilot)
        assert s.inspect_error is None and s.examples
        assert "/nowhere/model" not in shown(app, "#data-problems")
        app.exit()


@pytest.mark.parametrize("written,shown_as", [
    ("training:\n  seed: 042\n  num_epochs: 1:30\n", {"training.seed": "042", "training.num_epochs": "1:30"}),
    ("training: " + "[" * 20_000 + "]" * 20_000 + "\n", {}),
], ids=["numbers YAML reads otherwise", "nested 20k deep"])
async def test_a_config_that_does_not_load_opens_with_its_values_as_written(tmp_path, written, shown_as):
    """`lorapilot c.yaml` on a file nested 20,000 deep crashed the wizard (PyYAML's own reading of it, a
    RecursionError); a seed written 042 opened as 34 (YAML's octal), not as written beside its problem."""
    from engine.demo.model import demo_data_path

    mine = tmp_path / "c.yaml"
    mine.write_text(f"model: lorapilot-demo\ndataset: {{path: {demo_data_path()}}}\n{written}", encoding="utf-8")
    app = LorapilotApp(config_path=str(mine))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.pause(0.1)
        for path, text in shown_as.items():
            assert app.screen.query_one(f"#field-{path.replace('.', '-')}").value == text
        notes = " ".join(n.message for n in app._notifications)
        assert "line 3" in notes or "line 4" in notes, notes
        app.exit()


async def test_the_preview_drops_the_old_models_tokens_while_the_new_tokenizer_loads(held_tokenizer):
    """A hub model typed in place of the demo: while its tokenizer loaded (offline: retried for minutes), the
    Dataset step went on showing the demo tokenizer's tokens and counts (26 tokens, 10 trained, <s>) as if they
    were the new model's. They go when the model changes; the preview says the new ones are on their way."""
    import time

    gate = held_tokenizer
    app = LorapilotApp()
    async with app.run_test(size=SIZE) as pilot:
        s = app.wizard
        await settle(app, pilot)
        assert s.examples
        gate.clear()
        try:
            await type_into(pilot, "#field-model", "SmolLM2-135M")   # a preset: its shapes at once, its tokenizer not
            deadline = time.monotonic() + 300
            while (s.busy_with("model") or s.model_info is None or "SmolLM2" not in s.model_info.name) \
                    and time.monotonic() < deadline:
                await pilot.pause(0.05)
            await pilot.press("ctrl+n")
            await pilot.pause(0.1)
            assert s.busy_with("data") and not s.examples and s.data_report is None
            preview = shown(app, "#token-preview-text")
            assert "<s>" not in preview and "tokeniz" in preview, preview
        finally:
            gate.set()
        await settle(app, pilot)
        app.exit()


async def test_a_key_of_the_opened_config_with_no_field_is_said_on_review_not_only_in_a_passing_notice(tmp_path):
    """`training.learning_rat: 1e-3` (a typo): a 15-second notice said the problems were 'shown next to the fields',
    but the key has no field; after it the wizard showed, saved and launched the default learning rate without a
    word. Review now says what was left out, with the validator's words."""
    from engine.demo.model import demo_data_path

    path = tmp_path / "mine.yaml"
    path.write_text(f"model: lorapilot-demo\ndataset: {{path: {demo_data_path()}}}\ntraining:\n"
                    "  learning_rat: 1.0e-3\n", encoding="utf-8")
    app = LorapilotApp(config_path=str(path))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert any("Review lists them" in (n.title or "") for n in app._notifications)
        for _ in range(3):
            await pilot.press("ctrl+n")
            await settle(app, pilot)
        assert type(app.screen).__name__ == "ReviewScreen"
        box = app.screen.query_one("#review-problems")
        assert box.display
        assert ("! left out of mine.yaml: training.learning_rat: unknown key; did you mean 'learning_rate'?"
                in str(box.render()).replace("\n", " ")), str(box.render())
        app.exit()


def test_a_misspelt_section_is_left_out_in_the_validators_words_once(tmp_path):
    """`trainig:` (a section's typo) with two keys under it: Review listed each key as 'trainig.learning_rate: not a
    setting', without the validator's 'did you mean training?', once per key."""
    from tui.wizard_state import initial_config, left_out_keys

    path = tmp_path / "mine.yaml"
    path.write_text("model: lorapilot-demo\ntrainig:\n  learning_rate: 1.0e-3\n  max_steps: 5\n", encoding="utf-8")
    _, raw, notes = initial_config(str(path))
    assert left_out_keys(raw, notes) == ["trainig: unknown key; did you mean 'training'?"]
    assert left_out_keys({"x.y": 1}, []) == ["x.y: not a setting"]
