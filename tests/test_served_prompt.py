"""What a server that renders the adapter's saved chat template feeds is, id for id, what training fed before an
answer, for every family (tests/fixtures/template_families.py), with and without a pad token and a system prompt,
after one answer and after two.

Such servers render the template and tokenize the text without adding special tokens: vLLM's chat completions
(`add_special_tokens` false unless a request asks), transformers' `apply_chat_template(tokenize=True)` (the model
card's snippet, on the adapter or the merged model). The BOS a tokenizer adds in training must then be in the saved
template, or it is silently missing: a base model trained on alpaca rows through the default template, served by
vLLM, read `<s>### Instruction` in training and `### Instruction` served. llama.cpp --jinja drops a BOS the
template writes before adding its own, so one BOS there too.
"""

from __future__ import annotations

import pytest
from conftest import fake_adapter
from fixtures.template_families import FAMILIES, TURNS, load_family
from fixtures.template_families import TERSE as SYSTEM
from test_template_families import trained_runs

from engine.data import IGNORE_INDEX, tokenize_rows
from engine.data.masking import prefix_space_id
from engine.data.prompt import PromptStyle, load_style, save_for_inference
from engine.data.stops import stop_tokens
from engine.data.template import ALPACA_TEMPLATE, served_template, training_chat_template
from engine.samples import from_text



@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(the family's tokenizer, the adapter's saved tokenizer and style) per family, pad set-up and system prompt."""
    from engine.model import load_tokenizer

    root, cache = tmp_path_factory.mktemp("served"), {}

    def get(name: str, with_pad: bool, system: str):
        key = name, with_pad, system
        if key not in cache:
            tok = load_family(FAMILIES[name], root, with_pad=with_pad)
            out = root / f"{name}-{with_pad}-{bool(system)}"
            save_for_inference(tok, PromptStyle("chat", system), out)
            cache[key] = tok, load_tokenizer(str(out)), load_style(out)
        return cache[key]
    return get


# a third question and answer, after fixtures.template_families.TURNS' two
THIRD = [{"role": "user", "content": "And the sky?"}, {"role": "assistant", "content": "Blue."}]


def _prefix_before_last_answer(tok, messages) -> list[int]:
    (ex,) = tokenize_rows([{"messages": messages}], "chat", ["t.jsonl:1"], tok, max_seq_length=4096)
    starts = [i for i in range(1, len(ex.labels)) if ex.labels[i] != IGNORE_INDEX and ex.labels[i - 1] == IGNORE_INDEX]
    return ex.input_ids[: starts[-1]]


def _without_word_starts(tok, ids) -> str:
    return "".join(t.replace("\u2581", "") for t in tok.convert_ids_to_tokens(ids))


def _cases():
    for name, family in FAMILIES.items():
        for system in ("", SYSTEM):
            # a template that refuses a system turn trains none; one that writes it only into a last user turn
            # trains without it (the runtime's difference is reported: test_template_families.py)
            if system and family.template_file and (not family.system or family.system_in_last_user_only):
                continue
            for with_pad in (False, True):
                yield pytest.param(name, with_pad, system, id=f"{name}-{'pad' if with_pad else 'nopad'}"
                                   + ("-system" if system else ""))


@pytest.mark.parametrize(("name", "with_pad", "system"), list(_cases()))
def test_a_server_rendering_the_saved_template_feeds_the_training_prefix(saved, name, with_pad, system):
    tok, served_tok, style = saved(name, with_pad, system)
    head = [{"role": "system", "content": system}] if system else []
    for n in (2, 4, 6):  # one answer; then the second and third of a conversation, history included
        messages = head + (TURNS + THIRD)[:n]
        trained = _prefix_before_last_answer(tok, messages)
        served = list(served_tok.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True,
                                                     return_dict=True)["input_ids"])
        if n > 2 and prefix_space_id(tok) is not None:
            # SentencePiece: training tokenizes each segment alone (a history answer "▁Yellow." after "[/INST]"),
            # a server the whole text ("Y" "ellow."): the history's ids differ by those word-start `▁` only (the
            # masking's seam rule, engine/data/masking.py; tests/test_export_templates.py says the same of Ollama)
            served, trained = _without_word_starts(served_tok, served), _without_word_starts(tok, trained)
        assert served == trained, (n, served, trained)
    # the playground and `lorapilot chat` (the adapter's tokenizer), sample_prompts in training (the model's): a
    # typed question after the shared system prompt; both stop where training stopped
    first = _prefix_before_last_answer(tok, head + TURNS[:2])
    assert from_text(served_tok, TURNS[0]["content"], style).ids == first == \
        from_text(tok, TURNS[0]["content"], style).ids
    assert stop_tokens(served_tok) == stop_tokens(tok)
    # an export re-saves the adapter's tokenizer as servers must render it (merge.served_tokenizer): unchanged
    assert served_template(served_tok, training_chat_template(served_tok, "chat")) == served_tok.chat_template


def test_the_bos_goes_after_lorapilots_own_comments(saved):
    """A template's first line may say what lorapilot removed (engine/data/prefill.py reads it there): it stays
    first, and a template that writes the BOS already is saved unchanged."""
    from engine.data.prefill import _MARK, removed_prefill
    from engine.data.template import ALPACA_TEMPLATE, with_bos

    tok, _, _ = saved("mistral_base", False, "")
    marked = _MARK % '"<think>\\n"' + ALPACA_TEMPLATE
    written = with_bos(tok, marked)
    assert removed_prefill(written) == "<think>\n"
    assert tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False, chat_template=written) \
        .startswith("<s>### Instruction")
    assert with_bos(tok, written) == written
    llama3, _, _ = saved("llama3", False, "")
    assert with_bos(llama3, llama3.chat_template) == llama3.chat_template


def test_an_adapter_saved_before_the_date_was_pinned_says_what_servers_write(tmp_path):
    """Llama 3.2's template writes the day it is rendered on. An adapter saved before lorapilot pinned it keeps the
    clock in its saved template, and its rows the day training rendered them: the export's card and log say that
    the export (as the playground and chat) writes the pinned day; an adapter saved since has nothing to say."""
    from engine.config import Config
    from engine.export.facts import _data_facts
    from engine.model import load_tokenizer

    tok = load_family(FAMILIES["llama3_2"], tmp_path, with_pad=False)
    tok.save_pretrained(str(tmp_path / "old"))  # as lorapilot saved it then: the model's own template
    save_for_inference(tok, PromptStyle("chat"), tmp_path / "new")
    cfg = Config()
    cfg.dataset.path = str(tmp_path / "gone.jsonl")
    (note,) = [n for n in _data_facts(cfg, load_tokenizer(str(tmp_path / "old"))).notes if "date" in n]
    assert "before lorapilot fixed the date" in note and "this export's template" in note and "26 Jul 2024" in note
    assert not [n for n in _data_facts(cfg, load_tokenizer(str(tmp_path / "new"))).notes if "date" in n]


@pytest.mark.parametrize("name", ["llama3", "mistral", "gemma2", "deepseek_r1", "mistral_base", "qwen2_5", "phi3_5",
                                  "deepseek_v3", "deepseek_v2", "command_r", "olmo2", "smollm2", "zephyr",
                                  "mistral_v0_3", "mistral_v7_tekken"])
def test_the_merged_models_tokenizer_tells_a_converter_whether_to_add_the_bos(saved, tmp_path, name):
    """Ollama's converter (ollama create from safetensors, convert/tokenizer.go) reads whether to add a BOS from
    tokenizer_config.json's add_bos_token alone, and writes false into the GGUF when the key is missing, which is
    how transformers 5 saves a tokenizer whose BOS comes from tokenizer.json's post-processor: Ollama fed no BOS
    where training fed one (the Modelfile says Ollama's tokenizer adds it). The merged folder's tokenizer says so,
    and is still the same tokenizer."""
    import json

    from engine.data.masking import tokenizer_adds_bos
    from engine.export.merge import save_tokenizer
    from engine.model import load_tokenizer

    tok, served_tok, _ = saved(name, False, "")
    save_tokenizer(served_tok, tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config.get("add_bos_token", False) is tokenizer_adds_bos(tok)  # as Ollama reads it
    again = load_tokenizer(str(tmp_path))
    assert again("What color", add_special_tokens=True)["input_ids"] == \
        tok("What color", add_special_tokens=True)["input_ids"]
    assert again.chat_template == served_tok.chat_template


@pytest.mark.parametrize("name", ["llama3_1", "llama3_2"])
def test_llama_cpp_passing_todays_date_string_still_gets_the_trained_date(saved, name):
    """llama.cpp --jinja renders every Llama 3.x template (one with the ipython header) through its Llama 3.x
    handler, which passes `date_string` = today whatever the request (common/chat.cpp); the template then writes
    that day, not the one training wrote (Llama 3.1's default 26 Jul 2024, 3.2's pinned clock). The saved template
    keeps the trained day; transformers and vLLM, which pass none, render as before."""
    tok, served_tok, _ = saved(name, False, "")
    for head in ([], [{"role": "system", "content": SYSTEM}]):
        messages = head + TURNS[:2]
        trained = _prefix_before_last_answer(tok, messages)
        for extra in ({}, {"date_string": "05 Dec 2026"}):
            text = served_tok.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False, **extra)
            assert "26 Jul 2024" in text and "Dec 2026" not in text, extra
            assert served_tok(text, add_special_tokens=False)["input_ids"] == trained


OLD_SAVES = {  # family -> the chat template an older lorapilot saved with the adapter (training_chat_template alone)
    "mistral_base": lambda tok: ALPACA_TEMPLATE,   # no BOS written: vLLM and transformers fed none
    "llama3_2": lambda tok: tok.chat_template,     # the clock not yet fixed
}


@pytest.mark.parametrize("name", sorted(OLD_SAVES))
def test_exports_of_an_adapter_saved_by_an_older_lorapilot_serve_the_training_prefix(tmp_path, name):
    """The adapter export (also vLLM's) and the merged one (also llama.cpp's) save the run's tokenizer with the
    template as servers must render it, whatever version of lorapilot saved the adapter: the BOS written, the day
    fixed as the playground fixes it."""
    from engine.export.merge import export_adapter
    from engine.model import load_tokenizer

    tok = load_family(FAMILIES[name], tmp_path, with_pad=False)
    run = tmp_path / "run"
    fake_adapter(run / "adapter", "{}")
    (run / "config.yaml").write_text("model: m\ndataset: {path: d.jsonl}\n")
    own = tok.chat_template
    tok.chat_template = OLD_SAVES[name](tok)
    tok.save_pretrained(str(run / "adapter"))
    tok.chat_template = own
    served = load_tokenizer(str(export_adapter(run, tmp_path / "out", card=False)))
    messages = [{"role": "system", "content": SYSTEM}] + TURNS[:2]
    ids = served.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True,
                                     return_dict=True)["input_ids"]
    assert list(ids) == _prefix_before_last_answer(tok, messages), served.convert_ids_to_tokens(ids)


@pytest.mark.parametrize(("name", "turns", "said"), [("mistral", 4, True), ("mistral", 2, False),
                                                     ("qwen2_5", 4, False), ("llama3", 4, False)])
def test_the_export_says_when_a_server_reads_earlier_answers_otherwise(tmp_path, name, turns, said):
    """A SentencePiece tokenizer that writes a word-start `▁` before text tokenized alone: training tokenizes each
    answer alone ("▁Yellow." after "[/INST]"), a server the whole conversation ("Y" "ellow."). With rows of several
    answers the history a served model reads differs from training's by those tokens: the export's card says so,
    and only then (one answer per row, or a byte-level tokenizer: the same ids)."""
    import json

    from engine.config import Config
    from engine.export.facts import _data_facts

    tok = load_family(FAMILIES[name], tmp_path, with_pad=False)
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"messages": TURNS[:turns]}) + "\n", encoding="utf-8")
    cfg = Config()
    cfg.dataset.path = str(data)
    notes = [n for n in _data_facts(cfg, tok).notes if "earlier answers" in n]
    assert len(notes) == said, notes


# ---------------------------------------------------------------- a conversation (the playground, `lorapilot chat`)

@pytest.mark.parametrize(("name", "with_pad", "system"), list(_cases()))
def test_a_follow_up_question_is_fed_the_training_prefix_of_its_conversation(saved, name, with_pad, system):
    """The playground and `lorapilot chat` feed a follow-up after the side's history: the ids a training row of
    that conversation has before its last answer (the second, the third), id for id (the Masker's, SentencePiece seams included), through
    the model's tokenizer (sample_prompts in training) and the adapter's saved one (the playground, chat). The
    training system prompt, or the user's own (the same ids as a row that had it)."""
    from engine.data.prompt import prompt_ids

    tok, served_tok, style = saved(name, with_pad, system)
    head = [{"role": "system", "content": system}] if system else []
    turns = TURNS + THIRD
    for n in (2, 3):  # a second question, and a third (two earlier answers: a template may treat the first apart)
        history = [(turns[i]["content"], turns[i + 1]["content"]) for i in range(0, 2 * n - 2, 2)]
        trained = _prefix_before_last_answer(tok, head + turns[:2 * n])
        for tokenizer in (tok, served_tok):
            ids, _ = prompt_ids(tokenizer, turns[2 * n - 2]["content"], style, history)
            assert ids == trained, (n, tokenizer.convert_ids_to_tokens(ids), tok.convert_ids_to_tokens(trained))
        if system:  # the user's own system prompt over a run whose rows had none
            _, no_system_tok, no_system_style = saved(name, with_pad, "")
            assert prompt_ids(no_system_tok, turns[2 * n - 2]["content"], no_system_style, history, SYSTEM)[0] \
                == trained


REASONED = [{"role": "user", "content": "What color is a lemon?"},
            {"role": "assistant", "content": "<think>\nA lemon is yellow.\n</think>\n\nYellow."},
            {"role": "user", "content": "And a tomato?"},
            {"role": "assistant", "content": "<think>\nA tomato is red.\n</think>\n\nRed."}]


@pytest.mark.parametrize(("name", "last"), [("qwen3", "<think>\nA tomato is red.\n</think>\n\nRed.<|im_end|>"),
                                            ("deepseek_r1", "Red.<｜end▁of▁sentence｜>"),
                                            ("deepseek_v3", "Red.<｜end▁of▁sentence｜>")])
def test_reasoning_in_earlier_answers_is_trained_and_fed_as_servers_render_it(saved, name, last):
    """Qwen3's template drops the think block of answers before the last question (DeepSeek's, of every answer). A
    row with reasoning in every answer trains them as the template renders them (Qwen3: the last answer's reasoning
    kept, the first's dropped), and says so; a follow-up after an answer the model wrote with its reasoning is fed,
    by the playground and chat and by a server rendering the saved template, the training row's prefix."""
    from engine.data import DataReport
    from engine.data.prompt import prompt_ids

    tok, served_tok, style = saved(name, False, "")
    report = DataReport(path="t.jsonl", format="chat")
    (ex,) = tokenize_rows([{"messages": REASONED}], "chat", ["t.jsonl:1"], tok, max_seq_length=4096, report=report)
    first, second = trained_runs(ex)
    assert tok.decode(second).strip() == last
    assert "lemon is yellow" not in tok.decode(ex.input_ids)  # an earlier answer's reasoning: in no render
    assert any(n.startswith("the chat template drops part of some answers") for n in report.notes), report.notes
    trained = _prefix_before_last_answer(tok, REASONED)
    history = [(REASONED[0]["content"], REASONED[1]["content"])]  # the first answer as the model wrote it
    for tokenizer in (tok, served_tok):
        assert prompt_ids(tokenizer, REASONED[2]["content"], style, history)[0] == trained
    served = served_tok.apply_chat_template(REASONED[:3], add_generation_prompt=True, tokenize=True,
                                            return_dict=True)["input_ids"]
    assert list(served) == trained, (served_tok.convert_ids_to_tokens(served), tok.convert_ids_to_tokens(trained))


@pytest.mark.parametrize(("family", "pad", "system"), [
    (family, pad, system) for family in ("llama3", "llama3.1", "qwen2.5", "mistral", "gemma2", "alpaca-default")
    for pad in (False, True) for system in ("", "the capital")
    if not (system and family in ("mistral", "gemma2"))])  # their templates refuse a system turn: no row has one
def test_a_follow_up_is_fed_the_training_prefix_for_the_chat_families(family, pad, system):
    """The same seam over tests/chat_families.py's tokenizers (a word vocabulary, each family's specials and pad
    set-up): the prefix of a two-answer training row before its second answer."""
    from chat_families import family_tokenizer

    from engine.data.prompt import prompt_ids

    tok = family_tokenizer(family, pad=pad)
    head = [{"role": "system", "content": system}] if system else []
    turns = [{"role": "user", "content": "the capital of Italy"}, {"role": "assistant", "content": "Rome"},
             {"role": "user", "content": "the capital of France"}, {"role": "assistant", "content": "Paris"}]
    ids, _ = prompt_ids(tok, turns[2]["content"], PromptStyle("chat", system), [("the capital of Italy", "Rome")])
    assert ids == _prefix_before_last_answer(tok, head + turns), tok.convert_ids_to_tokens(ids)


def test_formats_without_turns_take_no_history_and_say_why(saved):
    from engine.data.prompt import one_question_only, prompt_ids

    tok, _, _ = saved("mistral_base", False, "")
    assert one_question_only("chat") is None
    assert one_question_only("alpaca") == "alpaca rows have no multi-turn layout: one question at a time"
    with pytest.raises(ValueError, match="alpaca rows have no multi-turn layout"):
        prompt_ids(tok, "And a tomato?", PromptStyle("alpaca"), [("What color is a lemon?", "Yellow.")])


def test_the_system_prompt_in_use_names_the_templates_own(saved):
    """Rows with different system prompts train with none: the playground then asks with none, and Qwen2.5's
    template writes its own default, which no training row had. The line the playground shows says so."""
    from engine.data.prompt import system_in_use, template_system_prompt

    qwen, _, _ = saved("qwen2_5", False, "")
    default = template_system_prompt(qwen, "chat")
    assert default == "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    assert default in qwen.apply_chat_template(TURNS[:1], tokenize=False)  # as the template writes it
    for name in ("llama3", "llama3_1", "mistral", "mistral_v0_3", "gemma2", "phi3_5", "mistral_base"):
        assert template_system_prompt(saved(name, False, "")[0], "chat") == "", name
    # Mistral Small 3's: its default system message, with the date the template writes pinned
    small = template_system_prompt(saved("mistral_v7_tekken", False, "")[0], "chat")
    assert small.startswith("You are Mistral Small 3, a Large Language Model") and "2024-07-26" in small
    assert template_system_prompt(qwen, "alpaca") == ""
    chat = PromptStyle("chat")
    assert system_in_use(chat, "", default) == f'none, so the template writes its own: "{default}"'
    assert system_in_use(chat) == "none (training rows had different ones, or none)"
    assert system_in_use(PromptStyle("chat", SYSTEM), "", default) == f'training\'s (every row had it): "{SYSTEM}"'
    assert system_in_use(PromptStyle("chat", SYSTEM), "Be brief.", default) == 'yours: "Be brief."'
    assert system_in_use(PromptStyle("completion")) == "none (completion rows have no system prompt)"


def test_the_oldest_turns_go_first_when_the_context_is_full():
    from engine.playground import dropped_turns_note, fit_history

    history = [("q1", "a1"), ("q2", "a2"), ("q3", "a3")]
    ids_for = lambda turns: [0] * (2 + 10 * len(turns))  # noqa: E731 - 10 tokens a turn, 2 for the question
    assert fit_history(ids_for, history, None) == ([0] * 32, 0)
    assert fit_history(ids_for, history, 32) == ([0] * 32, 0)
    assert fit_history(ids_for, history, 31) == ([0] * 22, 1)
    assert fit_history(ids_for, history, 12) == ([0] * 12, 2)
    assert fit_history(ids_for, history, 1) == ([0] * 2, 3)  # the question alone even where it cannot fit
    assert dropped_turns_note(2, 2048, 128) == ("the oldest 2 turns of this conversation no longer fit the model's "
                                                "context (2,048 tokens, 128 of them kept for the answer): left out")


@pytest.mark.parametrize("fmt", ["chat", "alpaca"])
@pytest.mark.parametrize("name", [name for name, f in FAMILIES.items() if f.template_file and not f.system])
def test_a_system_prompt_the_template_has_no_role_for_is_refused_as_training_refuses_it(saved, name, fmt):
    """Gemma 2's and Mistral v0.2's templates raise on a system turn, and training refuses a row with one (it folds
    nothing into the first user turn). A system prompt typed in the playground or given to `lorapilot chat` is
    refused too, in plain words naming it, before anything is generated (not the template's exception text); the
    question alone is fed training's prefix, id for id."""
    from engine.data.prompt import prompt_ids, system_refused
    from engine.errors import DataError, UserError

    tok, served_tok, _ = saved(name, False, "")
    row = ({"messages": [{"role": "system", "content": SYSTEM}] + TURNS[:2]} if fmt == "chat" else
           {"instruction": TURNS[0]["content"], "input": "", "output": TURNS[1]["content"], "system": SYSTEM})
    with pytest.raises(DataError):  # training: the row is refused
        tokenize_rows([row], fmt, ["t.jsonl:1"], tok, max_seq_length=4096)
    for tokenizer in (tok, served_tok):
        why = system_refused(tokenizer, fmt)
        assert why == "this model's chat template has no place for a system prompt (training refuses a row with one)", why
        with pytest.raises(UserError) as refused:
            prompt_ids(tokenizer, TURNS[0]["content"], PromptStyle(fmt, SYSTEM))
        assert str(refused.value).startswith(f"system prompt: {why}"), str(refused.value)
        assert "raise_exception" not in str(refused.value) and "roles must alternate" not in str(refused.value)
        assert system_refused(tokenizer, "completion") is None
    # a server rendering the saved template (vLLM's chat API, transformers, llama.cpp --jinja; every export carries
    # it) refuses a request with a system message too: the template raises, nothing is folded into the user's turn
    with pytest.raises(Exception, match="(?i)system|roles"):  # Gemma 2: "System role not supported"
        served_tok.apply_chat_template([{"role": "system", "content": SYSTEM}, TURNS[0]], tokenize=False,
                                       add_generation_prompt=True)
    (trained,) = tokenize_rows([{k: v for k, v in row.items() if k != "system"} if fmt == "alpaca" else
                                {"messages": TURNS[:2]}], fmt, ["t.jsonl:1"], tok, max_seq_length=4096)
    ids, _ = prompt_ids(served_tok, TURNS[0]["content"], PromptStyle(fmt))
    assert ids == trained.input_ids[: trained.labels.index(next(x for x in trained.labels if x != IGNORE_INDEX))]


@pytest.mark.parametrize("name", ["qwen2_5", "llama3_1", "gemma3"])
def test_a_template_with_a_system_role_takes_a_system_prompt(saved, name):
    from engine.data.prompt import system_refused

    assert system_refused(saved(name, False, "")[0], "chat") is None


# ---------------------------------------------------------------- the seam: playground = request = training prefix

def _playground(tokenizer, style):
    """The playground's (and `lorapilot chat`'s) own prompt method on a tokenizer and style, no model loaded."""
    from engine.playground import Playground

    pg = Playground.__new__(Playground)
    pg.tokenizer, pg.style = tokenizer, style
    return pg


@pytest.mark.parametrize("with_pad", [False, True], ids=["nopad", "pad"])
@pytest.mark.parametrize("name", [name for name, f in FAMILIES.items() if f.template_file])
def test_the_playground_feeds_what_a_request_renders_for_every_template(saved, name, with_pad):
    """For every chat template, a question typed in the playground (or given to `lorapilot chat`), with and without
    the user's own system prompt, after no, one and two earlier answers, is fed the ids of the saved template's
    render with its generation prompt (what vLLM, llama.cpp and Ollama feed a request with those messages), and,
    wherever training rows carry that system message, the ids training fed before that answer. A template that
    writes the system message into the last user turn only (Mistral v0.3, Nemo, Small) has it there, as servers
    do (it was dropped: no row that ends with an answer carries it); one with no system role refuses it, as
    training and servers do."""
    from engine.errors import UserError

    family = FAMILIES[name]
    tok, served_tok, style = saved(name, with_pad, "")
    turns = TURNS + THIRD
    for system in ("", SYSTEM):
        head = [{"role": "system", "content": system}] if system else []
        for n in (1, 2, 3):
            history = [(turns[i]["content"], turns[i + 1]["content"]) for i in range(0, 2 * n - 2, 2)]
            question = turns[2 * n - 2]["content"]
            if system and not family.system:
                with pytest.raises(UserError, match="system prompt: this model's chat template has no place"):
                    _playground(served_tok, style).prompt_ids(question, history, system)
                with pytest.raises(Exception, match="(?i)system|roles"):
                    served_tok.apply_chat_template(head + turns[:2 * n - 1], add_generation_prompt=True)
                continue
            fed = _playground(served_tok, style).prompt_ids(question, history, system)
            assert _playground(tok, style).prompt_ids(question, history, system) == fed  # the model's own tokenizer
            served = list(served_tok.apply_chat_template(head + turns[:2 * n - 1], add_generation_prompt=True,
                                                         tokenize=True, return_dict=True)["input_ids"])
            if system and family.system_in_last_user_only:
                # no training row has it: the request's render, the system message in the question's turn
                assert served_tok.decode(fed).count(system) == 1, served_tok.decode(fed)
            else:
                trained = _prefix_before_last_answer(tok, head + turns[:2 * n])
                assert fed == trained, (n, system, tok.convert_ids_to_tokens(fed), tok.convert_ids_to_tokens(trained))
            if n > 1 and prefix_space_id(tok) is not None:
                # an earlier answer segmented as training segments it (test_a_server_rendering_...: `▁` only)
                served, fed = _without_word_starts(served_tok, served), _without_word_starts(tok, fed)
            assert fed == served, (n, system, fed, served)


# whitespace at the prompt/answer seam, as data writes it: (question, answer) of each turn
SPACED = {
    "question-newline": [("What color is a lemon?\n", "Yellow."), ("And a tomato?\n", "Red.")],
    "question-space": [("What color is a lemon? ", "Yellow."), ("And a tomato? ", "Red.")],
    "answer-space": [("What color is a lemon?", " Yellow."), ("And a tomato?", " Red.")],
    "answer-newline": [("What color is a lemon?", "\nYellow."), ("And a tomato?", "\nRed.")],
    "answer-blank-lines": [("What color is a lemon?", "Yellow.\n\n"), ("And a tomato?", "Red.\n\n")],
}


@pytest.mark.parametrize("with_pad", [False, True], ids=["nopad", "pad"])
@pytest.mark.parametrize("name", [name for name, f in FAMILIES.items() if f.template_file])
def test_the_playground_feeds_the_training_prefix_with_whitespace_at_the_seam(saved, name, with_pad):
    """Whitespace at the prompt/answer seam (a question ending in a newline or space, an answer starting with one or
    ending in blank lines), the first question and a follow-up after an answer written so: the playground feeds the
    ids training fed before that answer, the question as typed (not stripped, as the samples show it). The seam stays
    a token boundary (engine/data/masking.py): one pass over a row would merge Qwen's `assistant\n` and an answer's
    leading `\n` into one token no prompt is fed with."""
    tok, served_tok, style = saved(name, with_pad, "")
    for case, turns in SPACED.items():
        for n in (1, 2):
            messages = [{"role": role, "content": text} for q, a in turns[:n]
                        for role, text in (("user", q), ("assistant", a))]
            trained = _prefix_before_last_answer(tok, messages)
            fed = _playground(served_tok, style).prompt_ids(turns[n - 1][0], turns[:n - 1], "")
            assert fed == trained, (case, n, tok.convert_ids_to_tokens(fed), tok.convert_ids_to_tokens(trained))


def test_the_system_prompt_in_use_says_when_training_saw_none(saved):
    """Rows that all had one system prompt, through a template that writes it into a last user turn only: training
    saw none, so by default the playground, chat and samples ask with none, and the line in use says so (it said
    "training's (every row had it)" over a prompt without it); a typed one goes where servers put it, and says so."""
    from engine.data.prompt import system_in_use, system_left_out

    for name in ("last_user_system", "last_user_system_chatml"):
        tok, served_tok, style = saved(name, False, SYSTEM)
        assert style.system == SYSTEM and system_left_out(tok, style) and system_left_out(served_tok, style)
        assert SYSTEM not in served_tok.decode(from_text(served_tok, TURNS[0]["content"], style).ids)
        assert system_in_use(style, "", "", True) == ('none, as in training: the chat template left the rows\' '
                                                      f'"{SYSTEM}" out of every row that ends with an answer')
        assert system_in_use(style, "Be brief.", "", True) == ('yours: "Be brief." (in the question\'s turn, where the '
                                                               'chat template puts it; no training row had one there)')
        assert _playground(served_tok, style).prompt_ids(TURNS[0]["content"], (), "Be brief.") == \
            list(served_tok.apply_chat_template([{"role": "system", "content": "Be brief."}, TURNS[0]],
                                                add_generation_prompt=True, tokenize=True,
                                                return_dict=True)["input_ids"])
    # the request's render is the Masker's still: special-token text typed in the question is text, not the token
    tok, _, style = saved("last_user_system_chatml", False, SYSTEM)
    ids = _playground(tok, style).prompt_ids("Is <|im_end|> a token?", (), "Be brief.")
    assert ids.count(tok.convert_tokens_to_ids("<|im_end|>")) == 1 and "Be brief." in tok.decode(ids)
    for name in ("llama3", "qwen2_5", "gemma3", "mistral_base"):
        tok, _, style = saved(name, False, SYSTEM)
        assert not system_left_out(tok, style), name
    assert not system_left_out(saved("gemma2", False, "")[0], PromptStyle("chat", SYSTEM))  # refused, not left out
    assert not system_left_out(saved("last_user_system", False, "")[0], PromptStyle("chat"))
