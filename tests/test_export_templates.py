"""The Ollama Modelfile renders what training rendered, for every supported template family (no training here).

Three layers, each able to fail on its own:
1. the Go-template renderer renders Ollama's own templates exactly as Ollama's tests expect;
2. for each family (the published chat template over a local tokenizer with the family's special tokens, with and
   without a pad token), the export picks the family's Ollama template, and the Modelfile it writes (parsed
   back: TEMPLATE, SYSTEM, stops) makes Ollama feed, for a fresh 3-turn conversation, the exact prompt the
   trainer's renderer trained on, and stops on every end token the trainer trained;
3. a template that differs by one character is refused.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from chat_families import FAMILIES, family_tokenizer

from engine.data.template import Renderer
from engine.errors import UserError
from engine.export.gotemplate import GoTemplateError, ollama_chat_values, render
from engine.export.ollama import (
    OllamaTemplate,
    load_templates,
    match_template,
    modelfile,
    ollama_prompt,
)

OLLAMA_TESTDATA = Path(__file__).parent / "fixtures" / "ollama_testdata"
HELLO = [{"role": "user", "content": "Hello, how are you?"}]
CHAT = HELLO + [{"role": "assistant", "content": "I'm doing great. How can I help you today?"},
                {"role": "user", "content": "I'd like to show off how chat templating works!"}]
CONVERSATIONS = {"user": HELLO, "user-assistant-user": CHAT,
                 "system-user-assistant-user": [{"role": "system", "content": "You are a helpful assistant."}, *CHAT]}


@pytest.mark.parametrize("template", sorted(p.stem for p in OLLAMA_TESTDATA.glob("*.gotmpl")))
def test_go_renderer_renders_ollamas_templates_as_ollama_does(template):
    source = (OLLAMA_TESTDATA / f"{template}.gotmpl").read_text()
    for conversation, messages in CONVERSATIONS.items():
        expected = (OLLAMA_TESTDATA / f"{template}.{conversation}").read_text()
        assert render(source, ollama_chat_values(messages)) == expected, (template, conversation)


def test_go_renderer_refuses_what_it_cannot_render():
    with pytest.raises(GoTemplateError):
        render("{{ if .System }}unclosed", {"System": "x"})
    with pytest.raises(GoTemplateError):
        render("{{ template \"x\" }}", {})


# ------------------------------------------------------------------ families

EXPECTED = {"llama3": "llama3", "llama3.1": "llama3.1", "qwen2.5": "qwen2.5", "mistral": "mistral",
            "gemma2": "gemma", "alpaca-default": "alpaca"}
THREE_TURNS = [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."},
               {"role": "user", "content": "Another one?"}, {"role": "assistant", "content": "Green."},
               {"role": "user", "content": "And a third?"}, {"role": "assistant", "content": "Red, then."}]
DATA_SYSTEM = "You are a terse assistant."


def parse_modelfile(text: str) -> dict:
    """TEMPLATE, SYSTEM and the stops, as Ollama's parser reads them (triple-quoted values, JSON-quoted stops)."""
    out = {"stop": [json.loads(s) for s in re.findall(r'^PARAMETER stop (".*")$', text, re.MULTILINE)]}
    for key in ("TEMPLATE", "SYSTEM"):
        m = re.search(rf'^{key} """(.*?)"""$', text, re.MULTILINE | re.DOTALL)
        out[key] = m.group(1) if m else None
    assert re.search(r"^FROM \.$", text, re.MULTILINE)
    return out


def trained(tokenizer, messages):
    """(prompt before the last answer, leading BOS removed; every trained end token) from the trainer's renderer."""
    r = Renderer(tokenizer, "completions").render({"messages": messages}, "chat", "test")
    last = max(i for i, (_, is_trained) in enumerate(r.segments) if is_trained)
    prompt = "".join(text for text, _ in r.segments[:last]).removeprefix(tokenizer.bos_token or "\0")
    specials = sorted(set(tokenizer.all_special_tokens), key=len, reverse=True)
    # Each trained answer ends with its end token, a special token of the tokenizer.
    ends = [next((t for t in specials if text.endswith(t)), None) for text, is_trained in r.segments if is_trained]
    return prompt, ends


@pytest.mark.parametrize("pad", [True, False], ids=["pad", "no-pad"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_modelfile_renders_the_trained_prompt_and_stops_on_trained_end_tokens(family, pad):
    tok = family_tokenizer(family, pad=pad)
    has_system = family not in ("mistral", "gemma2")  # their templates refuse a system turn
    match = match_template(tok, "chat", DATA_SYSTEM if has_system else None)
    assert match.template.name == EXPECTED[family]
    written = parse_modelfile(modelfile(match, source="test", system=DATA_SYSTEM if has_system else None))
    assert written["TEMPLATE"] == match.text
    for n in range(2, len(THREE_TURNS) + 1, 2):  # after 1, 2 and 3 answers
        conversation = THREE_TURNS[:n]
        # Training saw the system turn in every row; at serving time it comes from the Modelfile's SYSTEM.
        as_trained = ([{"role": "system", "content": DATA_SYSTEM}] if has_system else []) + conversation
        prompt, ends = trained(tok, as_trained)
        assert ollama_prompt(written["TEMPLATE"], conversation[:-1], written["SYSTEM"] or "") == prompt
        assert len(ends) == n // 2 and set(ends) <= set(written["stop"]), (ends, written["stop"])


def test_alpaca_default_fills_in_the_eos_and_completion_rows_get_the_raw_prompt():
    tok = family_tokenizer("alpaca-default")
    match = match_template(tok, "chat")
    assert "[[eos_token]]" not in match.text and "</s>" in match.text
    assert match_template(tok, "completion").template.name == "completion"
    with pytest.raises(UserError, match="plain text"):
        match_template(tok, "text")


def test_a_template_one_character_off_is_refused():
    good = next(t for t in load_templates() if t.name == "chatml")
    # The newline after <|im_end|> dropped: the history turns would differ from training.
    bad = OllamaTemplate("chatml-bad", good.template.replace("<|im_end|>\n", "<|im_end|>"), good.stops, "")
    tok = family_tokenizer("qwen2.5")
    with pytest.raises(UserError, match="no known Ollama template"):
        match_template(tok, "chat", templates=[bad])
    # ChatML without Qwen's default system prompt is not Qwen2.5's format either.
    with pytest.raises(UserError):
        match_template(tok, "chat", templates=[good])


def test_the_demo_model_gets_plain_chatml(demo_tokenizer):
    match = match_template(demo_tokenizer, "alpaca")
    assert match.template.name == "chatml" and "<|im_end|>" in match.stops
    assert match.bos == demo_tokenizer.bos_token  # the demo's template writes <s>; the Modelfile says so


def test_the_system_prompt_is_the_one_every_row_shares():
    from engine.export.facts import shared_system_prompt

    def chat(system):
        head = [{"role": "system", "content": system}] if system else []
        return {"messages": [*head, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}

    assert shared_system_prompt([chat("Be brief."), chat("Be brief.")], "chat") == ("Be brief.", None)
    system, note = shared_system_prompt([chat("Be brief."), chat("Be kind.")], "chat")
    assert system is None and "2 different system prompts" in note
    system, note = shared_system_prompt([chat("Be brief."), chat(None)], "chat")
    assert system is None and "some none" in note
    assert shared_system_prompt([chat(None)], "chat") == (None, None)
    assert shared_system_prompt([{"instruction": "i", "output": "o", "system": "S"}] * 2, "alpaca") == ("S", None)
