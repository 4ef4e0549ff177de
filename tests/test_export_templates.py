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
from fixtures.template_families import TERSE, TURNS

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
    # Go's slice past the end of a string is an error, not "" (the refusal in presets/ollama/gemma.gotmpl)
    with pytest.raises(GoTemplateError, match="index out of range: 99"):
        render('{{ slice "no system" 99 }}', {})
    assert render('{{ slice "abc" 1 }}{{ slice "abc" 0 3 }}', {}) == "bcabc"


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


@pytest.mark.parametrize("name", ["llama3_base", "mistral_base"])
def test_a_base_model_trained_on_completion_rows_exports_from_its_adapter(real_family, tmp_path, name):
    """The export reads the adapter's saved tokenizer, whose chat template is the raw one completion rows trained
    with (engine.data.template.RAW_TEMPLATE): that is still completion data, one prompt and one answer, never a
    conversation with a system turn the raw template writes as plain text."""
    from engine.data.prompt import PromptStyle, save_for_inference
    from engine.model import load_tokenizer

    _, tok = real_family(name)
    save_for_inference(tok, PromptStyle("completion"), tmp_path)
    match = match_template(load_tokenizer(str(tmp_path)), "completion")
    assert (match.template.name, match.bos, match.stops) == ("completion", tok.bos_token, [tok.eos_token])


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


# ------------------------------------------------------------------ every family, token by token

# The Ollama template each family of tests/fixtures/template_families.py gets; the others have none that renders
# what they trained with, and the export refuses them (vLLM and llama.cpp read the run's own template).
# Llama 3.2 gets llama3.1's: its template differs in tool calls only once its date is pinned to 26 Jul 2024
# (engine/data/template_date.py), the date Ollama's llama3.1 template writes.
# Gemma 3 gets gemma3 (its system prompt in the first user turn); Gemma 2 gets gemma, tried first (without a system
# prompt, all Gemma 2 takes, the two render alike).
OLLAMA_FOR = {"llama3": "llama3", "llama3_1": "llama3.1", "llama3_2": "llama3.1", "qwen2_5": "qwen2.5",
              "mistral": "mistral", "gemma2": "gemma", "gemma3": "gemma3", "qwen3": "chatml",
              "last_user_system": "mistral-last-user", "llama3_base": "alpaca",
              "mistral_base": "alpaca", "phi3_5": "phi3.5", "phi3": "phi3.5", "deepseek_r1": "deepseek-r1",
              "mistral_v0_3": "mistral-v0.3", "mistral_nemo": "mistral-nemo", "mistral_v7_tekken": "mistral-small3"}
# The architecture a family's model has where it decides the match: Ollama drops a Qwen3's earlier think blocks
# itself (Qwen3's template does in training), which the ChatML template alone would show.
ARCHITECTURE = {"qwen3": "Qwen3ForCausalLM"}


@pytest.fixture(scope="module")
def real_family(tmp_path_factory):
    from fixtures.template_families import FAMILIES as REAL, load_family

    root, cache = tmp_path_factory.mktemp("families"), {}

    def get(name):
        if name not in cache:
            cache[name] = (REAL[name], load_family(REAL[name], root, with_pad=False))
        return cache[name]
    return get


def _trained_prefix_and_ends(tok, messages):
    """The ids before the last answer, and the last trained token of every answer, as the trainer tokenizes."""
    from engine.data import IGNORE_INDEX, tokenize_rows

    (ex,) = tokenize_rows([{"messages": messages}], "chat", ["t:1"], tok, max_seq_length=4096)
    lab = ex.labels
    starts = [i for i in range(1, len(lab)) if lab[i] != IGNORE_INDEX and lab[i - 1] == IGNORE_INDEX]
    ends = [ex.input_ids[i] for i in range(len(lab)) if lab[i] != IGNORE_INDEX
            and (i + 1 == len(lab) or lab[i + 1] == IGNORE_INDEX)]
    return ex.input_ids[: starts[-1]], tok.convert_ids_to_tokens(ends)


@pytest.mark.parametrize("name", sorted(OLLAMA_FOR))
def test_ollama_feeds_the_trained_ids_and_stops_where_training_stopped(real_family, tmp_path, name):
    """Per family, with and without the data's system prompt, after one and two answers: what Ollama feeds (the
    Modelfile's TEMPLATE and SYSTEM rendered, tokenized whole, its tokenizer's BOS in front) is the ids training
    fed before the answer, and the playground's; the stops hold every end token trained."""
    from engine.data.masking import prefix_space_id
    from engine.data.prompt import PromptStyle, save_for_inference
    from engine.data.stops import stop_tokens
    from engine.model import load_tokenizer
    from engine.samples import from_text

    family, tok = real_family(name)
    for system in ([None, TERSE] if family.system else [None]):
        match = match_template(tok, "chat", system, architecture=ARCHITECTURE.get(name))
        assert match.template.name == OLLAMA_FOR[name]
        written = parse_modelfile(modelfile(match, source="test", system=match.system))
        # a system prompt the template leaves out of training rows is no SYSTEM line (nor rendered by Ollama)
        assert written["SYSTEM"] == (system if system and not family.system_in_last_user_only else None)
        save_for_inference(tok, PromptStyle(format="chat", system=system or ""), tmp_path / str(system))
        saved = load_tokenizer(str(tmp_path / str(system)))
        for n in (2, 4):
            messages = ([{"role": "system", "content": system}] if system else []) + TURNS[:n]
            prefix, ends = _trained_prefix_and_ends(tok, messages)
            text = ollama_prompt(written["TEMPLATE"], TURNS[: n - 1], written["SYSTEM"] or "")
            fed = ([tok.bos_token_id] if match.bos else []) + tok(text, add_special_tokens=False)["input_ids"]
            if n == 2:
                assert fed == prefix == from_text(saved, TURNS[0]["content"], PromptStyle("chat", system or "")).ids
            elif prefix_space_id(tok) is None:
                assert fed == prefix, name
            else:
                # A SentencePiece tokenizer that writes a `▁` before text tokenized alone: training tokenizes each
                # segment alone ("▁Yellow." after "[/INST]"), a server the whole conversation ("]Yellow." merged
                # otherwise, a `▁` after "</s>"). The earlier turns' ids differ there, their text only by those
                # word-start spaces (the masking's seam rule, engine/data/masking.py; the prompt before the first
                # answer is equal, above); the export card says so (facts._history_note).
                def text(ids):
                    return "".join(t.replace("\u2581", "") for t in tok.convert_ids_to_tokens(ids))
                assert text(fed) == text(prefix), name
            assert set(ends) <= set(written["stop"]), (ends, written["stop"])
        # and every stop the playground and chat stop on (engine.data.stops): Llama 3's <|end_of_text|>, Qwen's
        # <|endoftext|>, Gemma's <eos> were missing
        assert set(stop_tokens(saved)) <= set(written["stop"]), (stop_tokens(saved), written["stop"])


@pytest.mark.parametrize("name", ["gemma2", "mistral"])
def test_a_system_message_to_a_model_without_a_system_role_is_refused_as_training_refused_it(real_family, name):
    """Gemma 2's and Mistral v0.2's templates have no system role: training refuses a row with a system message,
    and so do vLLM and llama.cpp rendering the saved template, and the playground (engine.data.prompt.system_refused).
    Ollama's TEMPLATE refuses a request with one too (an execution error), not a turn the model never read, nor a
    silent drop (Mistral's did); the card says so."""
    from engine.data import tokenize_rows
    from engine.errors import DataError

    _, tok = real_family(name)
    with pytest.raises(DataError):
        tokenize_rows([{"messages": [{"role": "system", "content": TERSE}, *TURNS[:2]]}], "chat", ["t:1"], tok,
                      max_seq_length=4096)
    match = match_template(tok, "chat", None)
    assert match.template.name == OLLAMA_FOR[name]
    written = parse_modelfile(modelfile(match, source="test", system=match.system))
    assert written["SYSTEM"] is None
    for asked in ([{"role": "system", "content": TERSE}, TURNS[0]], [{"role": "system", "content": TERSE}, *TURNS[:3]]):
        with pytest.raises(GoTemplateError, match="index out of range"):
            ollama_prompt(written["TEMPLATE"], asked)
        with pytest.raises(GoTemplateError, match="index out of range"):  # the Modelfile's SYSTEM or /set system
            ollama_prompt(written["TEMPLATE"], asked[1:], TERSE)
    assert any(n.startswith("a request with a system message fails") for n in match.notes), match.notes
    # without one, the prompt is training's (test_ollama_feeds_the_trained_ids_and_stops_where_training_stopped)
    assert ollama_prompt(written["TEMPLATE"], TURNS[:1]).startswith("<start_of_turn>user" if name == "gemma2"
                                                                     else "[INST]")


@pytest.mark.parametrize("name", ["last_user_system", "mistral_v0_3", "mistral_nemo"])
@pytest.mark.parametrize("system", [None, TERSE])
def test_a_system_message_goes_where_the_runs_template_puts_it_when_training_left_it_out(real_family, system, name):
    """A template that writes the system message only into a user turn that ends the conversation (Mistral
    v0.3's and Nemo's placement) trained every row without it. At serving time vLLM and llama.cpp, rendering that
    template with a generation prompt, put a request's system message into its last user turn: Ollama's TEMPLATE
    does the same (Mistral's dropped it without a word), and feeds training's prompt when there is none."""
    from engine.data.template import training_chat_template

    _, tok = real_family(name)
    match = match_template(tok, "chat", system)
    assert match.template.name == OLLAMA_FOR[name]
    written = parse_modelfile(modelfile(match, source="test", system=match.system))
    assert written["SYSTEM"] is None   # training never showed it: no SYSTEM line
    for asked in (TURNS[:1], TURNS[:3]):
        served = tok.apply_chat_template([{"role": "system", "content": TERSE}, *asked], tokenize=False,
                                         add_generation_prompt=True,
                                         chat_template=training_chat_template(tok, "chat")).removeprefix(tok.bos_token)
        assert TERSE in served
        assert ollama_prompt(written["TEMPLATE"], [{"role": "system", "content": TERSE}, *asked]) == served
        assert ollama_prompt(written["TEMPLATE"], asked, TERSE) == served   # the SYSTEM a user sets
    assert any("last user turn" in n for n in match.notes), match.notes


def test_ollamas_own_gemma3_file_is_one_newline_off_gemma3s_training(real_family):
    """Ollama's gemma3-instruct.gotmpl ends with a newline after its last action: rendered whole, the generation
    prompt gets a blank line training never had. presets/ollama/gemma3.gotmpl is that template without it."""
    _, tok = real_family("gemma3")
    ollamas = (OLLAMA_TESTDATA / "gemma3-instruct.gotmpl").read_text()
    ours = next(t for t in load_templates() if t.name == "gemma3")
    assert ollamas == ours.template + "\n"
    with pytest.raises(UserError, match="no known Ollama template"):
        match_template(tok, "chat", TERSE, templates=[OllamaTemplate("gemma3-file", ollamas, ours.stops, "")])


# lorapilot's ChatML template with the system message in the last user turn only: none of presets/ollama renders
# it: refused, not served a prompt training never fed
def test_a_family_no_ollama_template_renders_is_refused(real_family):
    _, tok = real_family("last_user_system_chatml")
    with pytest.raises(UserError, match="no known Ollama template"):
        match_template(tok, "chat", None)


def test_mistral_v0_3_answers_get_one_space_whether_sent_back_with_it_or_without(real_family):
    """Mistral v0.3's template writes `[/INST]` + ` ` + the answer trimmed: the model writes ` Yellow.` (its first
    piece `▁Yellow`), which Ollama's SentencePiece decoder hands back with the space; a client that trims it sends
    `Yellow.`. Either way the history is training's: one space, never two (Ollama's own template adds one always),
    never none."""
    _, tok = real_family("mistral_v0_3")
    match = match_template(tok, "chat", None)
    prompt, _ = trained(tok, TURNS[:4])
    for answer in ("Yellow.", " Yellow."):
        asked = [TURNS[0], {"role": "assistant", "content": answer}, TURNS[2]]
        assert ollama_prompt(match.text, asked) == prompt == "[INST] What color is a lemon?[/INST] Yellow.</s>" \
            "[INST] And a tomato?[/INST]"


def test_mistral_small_3_writes_its_default_system_prompt_as_training_did(real_family):
    """Small 3's template writes a default system prompt (with the date, fixed in training) when a row has none:
    the Modelfile has no SYSTEM line then, and the TEMPLATE writes that default itself; a system message (the data's,
    via SYSTEM, or a request's) replaces it, first, as in training."""
    _, tok = real_family("mistral_v7_tekken")
    match = match_template(tok, "chat", None)
    assert match.system is None
    prompt, _ = trained(tok, TURNS[:2])
    assert prompt.startswith("[SYSTEM_PROMPT]You are Mistral Small 3") and "2024-07-26" in prompt
    assert ollama_prompt(match.text, TURNS[:1]) == prompt
    with_system, _ = trained(tok, [{"role": "system", "content": TERSE}, *TURNS[:2]])
    assert ollama_prompt(match.text, TURNS[:1], TERSE) == with_system == \
        "[SYSTEM_PROMPT]You are terse.[/SYSTEM_PROMPT][INST]What color is a lemon?[/INST]"


# ------------------------------------------------------------------ reasoning models: the history's think blocks

THOUGHT = [TURNS[0], {"role": "assistant", "content": "<think>\nLemons are yellow.\n</think>\n\nYellow."},
           TURNS[2], TURNS[3]]


def test_ollamas_history_filter_is_its_thinking_parser():
    """server/routes.go filterThinkTags: answers before the last question lose a leading think block (and the
    whitespace after it); the answer after it, and text with no leading block, are kept."""
    from engine.export.gotemplate import drop_leading_think

    assert drop_leading_think(" \n<think>\nx\n</think>\n\nParis.") == "Paris."
    assert drop_leading_think("<think>never closed") == ""
    assert drop_leading_think("Paris. <think>x</think>") == "Paris. <think>x</think>"
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>a</think>A"},
            {"role": "user", "content": "q2"}, {"role": "assistant", "content": "<think>b</think>B"}]
    got = [m["Content"] for m in ollama_chat_values(msgs, strip_think=True)["Messages"]]
    assert got == ["q", "A", "q2", "<think>b</think>B"]
    assert [m["Content"] for m in ollama_chat_values(msgs)["Messages"]] == [m["content"] for m in msgs]


def test_qwen3_history_as_the_model_writes_it(real_family):
    """Qwen3 writes a think block before every answer (trained with it) and its template drops it from earlier
    answers. Ollama's ChatML template would show it in the history; Ollama's server drops it for the qwen3
    architecture only: matched there, with a note; refused for another architecture (Qwen3's MoE, unknown), in
    words naming the think blocks."""
    _, tok = real_family("qwen3")
    match = match_template(tok, "chat", None, architecture="Qwen3ForCausalLM")
    assert match.template.name == "chatml" and any("think block" in n for n in match.notes)
    def trained(messages):  # the text before the last answer, and that answer's trained text
        segments = Renderer(tok).render({"messages": messages}, "chat", "t").segments
        last = max(i for i, (_, is_trained) in enumerate(segments) if is_trained)
        return "".join(t for t, _ in segments[:last]), segments[last][0]

    prompt = trained(THOUGHT)[0]
    first = trained(THOUGHT[:2])[1].removesuffix("<|im_end|>")
    assert first.startswith("<think>\nLemons are yellow.\n</think>")  # what the model wrote at that turn
    served = [THOUGHT[0], {"role": "assistant", "content": first}, THOUGHT[2]]
    assert ollama_prompt(match.text, served, strip_think=True) == prompt
    assert ollama_prompt(match.text, served) != prompt  # without the server's filter: the think block shown
    for architecture in ("Qwen3MoeForCausalLM", None):
        with pytest.raises(UserError, match=r"earlier answers with their think blocks \(<think>"):
            match_template(tok, "chat", None, architecture=architecture)


def test_deepseek_r1_history_as_the_model_writes_it(real_family):
    """DeepSeek-R1's template drops the reasoning from every answer, the last one too: the model is trained to
    write none, so its earlier answers reach Ollama as training showed them, whatever the architecture."""
    _, tok = real_family("deepseek_r1")
    match = match_template(tok, "chat", None, architecture="Qwen2ForCausalLM")
    assert match.template.name == "deepseek-r1"
    assert "with reasoning (<think>)" in "; ".join(match.checked)


def test_the_architecture_is_read_from_the_base_models_config(tmp_path):
    """What decides whether Ollama drops earlier think blocks, read before the merge: the base's config.json (the
    merged model keeps its architecture); unreadable, None (the export then assumes Ollama does not)."""
    from engine.export.ollama import base_architecture

    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["Qwen3ForCausalLM"]}))
    assert base_architecture(str(tmp_path)) == "Qwen3ForCausalLM"
    # not JSON; no table, nested past Python's limit, architectures not a list (the export ended in a traceback)
    for text in ("{not json", "[]", "[" * 100_000, '{"architectures": 5}'):
        (tmp_path / "config.json").write_text(text)
        assert base_architecture(str(tmp_path)) is None
