"""`lorapilot chat` holds a conversation with a real (tiny) model: each side's history fed to the next question,
the oldest turns left out (and said) where the context is full, `/new` starting anew; --system refused where the
run's rows have no system prompt.

The run is the demo model with a fresh adapter (no training: what is tested is what is fed, not what was learnt),
its context cut to 64 tokens so that one earlier turn is enough to fill it.
"""

from __future__ import annotations

import io
import json
import shutil
import sys

import pytest

from conftest import unwrapped
from engine.cli import main

CONTEXT = 64
QUESTION = "What is 2 plus 3?"


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory, demo_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from engine.data.prompt import PromptStyle, save_for_inference
    from engine.model import load_tokenizer

    root = tmp_path_factory.mktemp("chat")
    model_dir = root / "model"
    shutil.copytree(demo_model_dir, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "max_position_embeddings": CONTEXT}))
    run = root / "run"
    run.mkdir()
    (run / "config.yaml").write_text(f"model: {model_dir}\ndataset:\n  path: {root / 'gone.jsonl'}\n"
                                     "quantization: none\nlora: {r: 4, alpha: 8}\n")
    base = AutoModelForCausalLM.from_pretrained(str(model_dir))
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], task_type="CAUSAL_LM")   # as the trainer makes it
    get_peft_model(base, lora).save_pretrained(str(run / "adapter"))
    save_for_inference(load_tokenizer(str(model_dir)), PromptStyle("chat"), run / "adapter")
    return run


def _chat(monkeypatch, capsys, run, *args, stdin: str = ""):
    from engine.data.prompt import prompt_ids
    from engine.model import load_tokenizer

    # room for the question alone beside the answer, for no earlier turn
    alone = len(prompt_ids(load_tokenizer(str(run / "adapter")), QUESTION, _style(run))[0])
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    rc = main(["chat", str(run), "--max-new-tokens", str(CONTEXT - alone), *args])
    out = capsys.readouterr()
    return rc, out.out, unwrapped(out.err)


def _style(run):
    from engine.data.prompt import load_style
    return load_style(run / "adapter")


def test_chat_feeds_each_side_its_history_and_new_starts_anew(chat_run, monkeypatch, capsys):
    rc, out, err = _chat(monkeypatch, capsys, chat_run, stdin=f"{QUESTION}\n{QUESTION}\n/new\n{QUESTION}\n")
    assert rc == 0, err
    assert out.count("[base] ") == 3 and out.count("[adapter] ") == 3
    assert "/new starts a new conversation" in err and "(a new conversation)" in err
    assert "system prompt in use: none (training rows had different ones, or none)" in err
    # the follow-up carried the first turn, which no longer fitted: said once per side; after /new, nothing to drop
    note = "the oldest turn of this conversation no longer fit the model's context (64 tokens"
    assert err.count(note) == 2, err
    assert err.index(note) < err.index("(a new conversation)") and err.rindex(note) < err.index("(a new conversation)")


def test_an_answer_is_shown_escaped_and_fed_back_as_the_model_wrote_it(chat_run, monkeypatch, capsys):
    """A model can write an escape sequence: the terminal gets it escaped, the follow-up feeds the model the ids it
    wrote (the escaped text, fed back, would be other tokens: a backslash, "x1b"). The answer is put into the real
    streamer as generate would, so the text that comes out is the Playground's own decoding."""
    import torch

    import engine.samples
    from engine.model import load_tokenizer

    said = "Red \x1b[31m. [bold]"
    said_ids = load_tokenizer(str(chat_run / "adapter")).encode(said, add_special_tokens=False)
    fed: list[list[int]] = []

    def generate(model, tokenizer, ids, *, streamer, **kw):
        fed.append(list(ids))
        streamer.put(torch.tensor([ids]))  # the prompt, which the streamer skips
        streamer.put(torch.tensor(said_ids))
        streamer.end()
    monkeypatch.setattr(engine.samples, "generate", generate)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{QUESTION}\n{QUESTION}\n"))
    rc = main(["chat", str(chat_run), "--adapter-only", "--max-new-tokens", "4"])
    out, err = capsys.readouterr()
    assert rc == 0 and "no longer fit" not in err, err
    assert out.count("Red \\x1b[31m. [bold]") == 2 and "\x1b" not in out, out
    n = len(said_ids)
    assert any(fed[1][i:i + n] == said_ids for i in range(len(fed[1]))), fed[1]


def test_chats_lines_before_the_first_prompt_fit_80_columns(chat_run, tmp_path, monkeypatch, capsys):
    """A run on alpaca rows: 'type a prompt and Enter; (alpaca rows have no multi-turn layout: one question at a
    time); Ctrl-D to quit' was one line of 100 columns, cut by an 80-column terminal. Wrapped at words now."""
    run = tmp_path / "alpaca-run"
    shutil.copytree(chat_run, run)
    (run / "adapter" / "lorapilot_prompt.json").write_text(json.dumps({"format": "alpaca", "system": ""}))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["chat", str(run), "--adapter-only"]) == 0
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if len(line) > 80] == [], err
    assert ("type a prompt and Enter (alpaca rows have no multi-turn layout: one question at a time); Ctrl-D to quit"
            in unwrapped(err)), err


def test_one_prompt_keeps_no_history(chat_run, monkeypatch, capsys):
    rc, out, err = _chat(monkeypatch, capsys, chat_run, "--prompt", QUESTION, "--system", "Be brief.")
    assert rc == 0, err
    assert out.count("[base] ") == 1 and 'system prompt in use: yours: "Be brief."' in err


def test_a_system_prompt_for_a_run_whose_rows_have_none_is_refused(chat_run, tmp_path, monkeypatch, capsys):
    run = tmp_path / "completion-run"
    shutil.copytree(chat_run, run)
    (run / "adapter" / "lorapilot_prompt.json").write_text(json.dumps({"format": "completion", "system": ""}))
    rc = main(["chat", str(run), "--prompt", "hi", "--system", "Be brief."])
    err = unwrapped(capsys.readouterr().err)
    assert rc == 2
    assert "--system: " in err and "trained on completion rows, which have no system prompt" in err
    assert "loading" not in err


@pytest.mark.timeout(300)
async def test_the_playground_holds_a_conversation_with_the_real_model(chat_run):
    """The playground's helper process and the model behind it: ask, ask a follow-up (each pane's own history
    fed back), start a new conversation."""
    from test_playground_screen import type_text, wait_for

    from tui.app import LorapilotApp

    app = LorapilotApp(start="playground", run_dir=str(chat_run))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.loaded or screen.pane("adapter").state == "error", 180, "model loaded")
        assert screen.loaded and screen.conversation
        screen.query_one("#sampling-max_new_tokens").value = "6"
        base, adapter = screen.pane("base"), screen.pane("adapter")
        for turn in (1, 2):
            screen.query_one("#prompt").focus()
            await type_text(pilot, QUESTION)
            await pilot.press("enter")
            await wait_for(pilot, lambda: len(adapter.history) == turn, 60, f"answer {turn}")
            assert adapter.state == base.state == "done"
            assert len(base.history) == turn and base.history[-1] == (QUESTION, base.text.strip())
            assert adapter.history[-1] == (QUESTION, adapter.text.strip())
        assert not [n for n in app._notifications if "no longer fit" in n.message]  # 6 new tokens: room enough
        assert screen.query_one("#prompt").border_title == "Prompt · turn 3"
        await pilot.press("ctrl+n")
        await pilot.pause(0.05)
        assert base.history == adapter.history == []
        app.exit()


@pytest.fixture(scope="module")
def playground(chat_run):
    from engine.playground import Playground
    return Playground(chat_run)


@pytest.mark.parametrize("system", ["", "Be brief."])
def test_the_ids_generate_is_fed_are_the_training_prefix_of_the_conversation(playground, monkeypatch, system):
    """Playground.stream, end to end to generate(): the follow-up after its side's history (and the system prompt
    typed) is fed the ids a training row of that conversation has before its second answer."""
    import engine.samples
    from engine.data import IGNORE_INDEX, tokenize_rows

    fed = []
    real = engine.samples.generate
    monkeypatch.setattr(engine.samples, "generate", lambda model, tok, ids, **kw: fed.append(list(ids)) or
                        real(model, tok, ids, **kw))
    pg = playground
    answers = pg.answer(QUESTION, adapter=True, max_new_tokens=4), pg.answer(QUESTION, adapter=False, max_new_tokens=4)
    for adapter, answer in zip((True, False), answers):
        pg.answer("And 4 plus 4?", adapter=adapter, history=[(QUESTION, answer)], system=system, max_new_tokens=4)
        messages = [{"role": "system", "content": system}] if system else []
        messages += [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": answer},
                     {"role": "user", "content": "And 4 plus 4?"}, {"role": "assistant", "content": "8."}]
        (row,) = tokenize_rows([{"messages": messages}], "chat", ["t.jsonl:1"], pg.tokenizer, max_seq_length=4096)
        second = max(i for i in range(1, len(row.labels))
                      if row.labels[i] != IGNORE_INDEX and row.labels[i - 1] == IGNORE_INDEX)
        assert fed[-1] == row.input_ids[:second], pg.tokenizer.convert_ids_to_tokens(fed[-1])


def test_a_system_prompt_the_template_has_no_place_for_is_refused_before_any_answer(chat_run, tmp_path, monkeypatch,
                                                                                  capsys):
    """Gemma 2's template raises on a system turn and training refuses a row with one: --system is refused in
    words, naming it, before either side answers (it printed `[base] ` and then the template's exception)."""
    from fixtures.template_families import TEMPLATES

    run = tmp_path / "gemma2-run"
    shutil.copytree(chat_run, run)
    for saved in (run / "adapter").glob("chat_template.jinja"):
        saved.unlink()
    config = json.loads((run / "adapter" / "tokenizer_config.json").read_text())
    config["chat_template"] = (TEMPLATES / "gemma2_it.jinja").read_text()
    (run / "adapter" / "tokenizer_config.json").write_text(json.dumps(config))
    rc = main(["chat", str(run), "--prompt", "hi", "--system", "Be brief."])
    out = capsys.readouterr()
    assert rc == 2 and "[base]" not in out.out, out.out
    assert "--system: this model's chat template has no place for a system prompt" in unwrapped(out.err)
    assert "raise_exception" not in out.err and "System role not supported" not in out.err
