"""Every trained token, on the real chat templates of the model families in tests/fixtures/template_families.py
and the alpaca default.

Mistral-7B-Instruct-v0.3's template, and two of lorapilot's own (tests/fixtures/chat_templates/README.md), write a
system message only into a user turn that ends the conversation (lorapilot's: `[INST]` turns, and ChatML turns with
a generation prompt). A training row renders without its system prompt: the answers are still trained right,
and every such row is reported, by file and line.

The tokenizers (tests/fixtures/template_families.py) carry each family's real
special tokens, BOS/EOS/pad set-up and published chat template, and are loaded
through the trainer's own loader. For every family, format and pad set-up:

- the trained tokens, decoded token by token, are the answer and one end token
  per assistant turn, nothing of the prompt (a golden listing of every row,
  trained tokens starred, is tests/fixtures/trained_tokens.txt: read it to see
  what is trained; LORAPILOT_REGOLD=1 rewrites it);
- the prompt ids are the prompt tokenized alone, exactly as inference does;
- the pad token changes nothing;
- the ids the playground, `lorapilot chat` and training.sample_prompts feed for
  a held-out row's question are the ids that row was trained with before its
  answer, with the tokenizer and prompt style saved with the adapter.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest
from fixtures.template_families import CHAT_FAMILIES, FAMILIES, TERSE, load_family, set_clock

from engine.data import IGNORE_INDEX, DataReport, tokenize_rows
from engine.data.prompt import (
    PromptStyle,
    load_style,
    save_for_inference,
    shared_system_prompt,
)
from engine.samples import from_text

GOLDEN = Path(__file__).parent / "fixtures" / "trained_tokens.txt"

ALPACA = {"instruction": "Give the plural of the word.", "input": "box", "output": "The plural of box is boxes."}
ALPACA_SYSTEM = {"instruction": "What is 6 plus 28?", "input": "", "output": "34.", "system": "Be brief."}
TURNS = [{"role": "user", "content": "What color is a lemon?"}, {"role": "assistant", "content": "Yellow."},
         {"role": "user", "content": "And a tomato?"}, {"role": "assistant", "content": "Red."}]
CHAT = {"messages": TURNS}
CHAT_SYSTEM = {"messages": [{"role": "system", "content": "You are terse."}] + TURNS}
COMPLETION = {"prompt": "Q: What is 35 plus 7?\nA:", "completion": " 42."}
TEXT = {"text": "Once upon a time the sky was blue."}

ROWS = {  # name -> (row, format, the answers in order)
    "alpaca": (ALPACA, "alpaca", [ALPACA["output"]]),
    "alpaca+system": (ALPACA_SYSTEM, "alpaca", [ALPACA_SYSTEM["output"]]),
    "chat": (CHAT, "chat", ["Yellow.", "Red."]),
    "chat+system": (CHAT_SYSTEM, "chat", ["Yellow.", "Red."]),
    "completion": (COMPLETION, "completion", [COMPLETION["completion"]]),
    "text": (TEXT, "text", [TEXT["text"]]),
}


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    cache: dict = {}

    def get(name: str, with_pad: bool = False):
        if (name, with_pad) not in cache:
            cache[name, with_pad] = load_family(FAMILIES[name], root, with_pad=with_pad)
        return cache[name, with_pad]
    return get


def build(tok, row, fmt):
    report = DataReport(path="t.jsonl", format=fmt)
    examples = tokenize_rows([row], fmt, ["t.jsonl:1"], tok, max_seq_length=4096, report=report)
    return (examples[0] if examples else None), report


def refuses_system(name: str, row_name: str) -> bool:
    return not FAMILIES[name].system and FAMILIES[name].template_file is not None and "system" in row_name


def trained_runs(ex) -> list[list[int]]:
    runs: list[list[int]] = []
    for i, (tid, label) in enumerate(zip(ex.input_ids, ex.labels)):
        if label == IGNORE_INDEX:
            continue
        if i and ex.labels[i - 1] != IGNORE_INDEX and runs:
            runs[-1].append(tid)
        else:
            runs.append([tid])
    return runs


def listing(tok, ex) -> str:
    """The row token by token, trained tokens starred."""
    return " ".join(("*" if label != IGNORE_INDEX else "") + repr(tok.convert_ids_to_tokens(tid))
                    for tid, label in zip(ex.input_ids, ex.labels))


# ---------------------------------------------------------------- what is trained

@pytest.mark.parametrize("with_pad", [False, True], ids=["no-pad", "pad"])
@pytest.mark.parametrize("row_name", list(ROWS))
@pytest.mark.parametrize("name", list(FAMILIES))
def test_trained_tokens_are_the_answers_and_one_end_token_each(tokenizers, name, row_name, with_pad):
    family, tok = FAMILIES[name], tokenizers(name, with_pad)
    row, fmt, answers = ROWS[row_name]
    if refuses_system(name, row_name):  # the family's template raises on a system turn: said, not hidden
        from engine.errors import DataError
        with pytest.raises(DataError, match="t.jsonl:1: the model's chat template cannot render"):
            build(tok, row, fmt)
        return
    ex, report = build(tok, row, fmt)
    end = family.end_of_turn if family.template_file and fmt != "text" else family.eos
    end_id = tok.convert_tokens_to_ids(end)
    runs = trained_runs(ex)
    # text rows: everything but position 0 (nothing predicts it) is trained, as one run
    assert len(runs) == len(answers), listing(tok, ex)
    for n, (run, answer) in enumerate(zip(runs, answers)):
        if n == len(answers) - 1 and family.template_file and fmt != "text":
            answer = family.final_answer_prefix + answer
        assert run[-1] == end_id and run.count(end_id) == 1, listing(tok, ex)  # one end token, at the end
        body = tok.decode(run[:-1], skip_special_tokens=False)
        if fmt == "text" and not family.text_bos:  # no BOS: the first token is the unpredicted position 0
            assert answer.endswith(body.strip()), listing(tok, ex)
        else:
            # the answer and nothing of the prompt (the template may trim it; SentencePiece writes its space)
            assert body.strip() == answer.strip(), listing(tok, ex)
    # no second end token after the last answer, trained or not (the EOS -> EOS bug); a template that writes the
    # EOS after the last turn keeps it, once, masked (the answer's end-of-turn token is where generation stops)
    last = max(i for i, label in enumerate(ex.labels) if label != IGNORE_INDEX)
    tail = ex.input_ids[last + 1:]
    if family.final_eos and fmt != "text":
        assert tail.count(tok.eos_token_id) == 1 and tail[-1] == tok.eos_token_id, listing(tok, ex)
    else:
        assert tok.eos_token_id not in tail, listing(tok, ex)
    assert not any("no end token" in note for note in report.notes)
    # a system prompt the template leaves out of the row is counted; one it renders (anywhere) is not
    assert report.n_system_left_out == (family.system_in_last_user_only and "system" in row_name), report
    # one BOS, first, when the family's tokenizer or template puts one (OLMo 2's BOS is its EOS too: after each
    # answer, trained, it is the answer's end token)
    bos_at = [i for i, (tid, label) in enumerate(zip(ex.input_ids, ex.labels))
              if tid == tok.bos_token_id and (label == IGNORE_INDEX or tok.bos_token_id != tok.eos_token_id)]
    if family.bos_first(fmt):
        assert bos_at == [0], listing(tok, ex)
    # the prompt is tokenized alone, as inference tokenizes it: the seam is a token boundary
    if fmt != "text":
        alone = tok(ex.prompt_text, add_special_tokens=False)["input_ids"]
        bos = [tok.bos_token_id] if family.row_bos and alone[:1] != [tok.bos_token_id] else []
        assert ex.input_ids[: ex.prompt_len] == bos + alone
        assert all(label == IGNORE_INDEX for label in ex.labels[: ex.prompt_len])
        assert ex.labels[ex.prompt_len] != IGNORE_INDEX  # the answer starts right at the seam


@pytest.mark.parametrize("row_name", list(ROWS))
@pytest.mark.parametrize("name", list(FAMILIES))
def test_the_pad_token_changes_nothing(tokenizers, name, row_name):
    """Padding is masked by position: whether pad is the EOS (load_tokenizer's fallback) or its own token."""
    if refuses_system(name, row_name):
        return
    row, fmt, _ = ROWS[row_name]
    without, _ = build(tokenizers(name, False), row, fmt)
    with_pad, _ = build(tokenizers(name, True), row, fmt)
    assert (without.input_ids, without.labels) == (with_pad.input_ids, with_pad.labels)


# (family, its EOS where it differs from the template's end-of-turn token): Meta-Llama-3-8B-Instruct's first
# tokenizer_config.json named <|end_of_text|> its EOS; Qwen2.5's base models ship the ChatML template with EOS
# <|endoftext|>
END_OF_TURN_BESIDE_EOS = [("gemma2", None), ("gemma3", None), ("phi3_5", None), ("llama3", "<|end_of_text|>"),
                          ("qwen2_5", "<|endoftext|>")]


@pytest.mark.parametrize(("name", "eos"), END_OF_TURN_BESIDE_EOS)
def test_a_pad_token_that_is_the_end_of_turn_token_changes_nothing(tokenizers, tmp_path, name, eos):
    """Padding is masked by position, whatever the pad is: a checkpoint whose pad token is its end-of-turn token
    (`<|eot_id|>` beside the EOS `<|end_of_text|>`, set by a fine-tuning script) trains each answer ending in that
    token once, as with any other pad, and stops on it; not that token, then an EOS no generation reaches."""
    import dataclasses

    from engine.data.stops import stop_tokens

    family = dataclasses.replace(FAMILIES[name], eos=eos or FAMILIES[name].eos)
    other_pad = load_family(dataclasses.replace(family, name=f"{name}-own-pad"), tmp_path, with_pad=True)
    eot_pad = load_family(dataclasses.replace(family, name=f"{name}-eot-pad", pad=family.end_of_turn), tmp_path,
                          with_pad=True)
    assert eot_pad.pad_token == family.end_of_turn != eot_pad.eos_token
    for row_name in ("chat", "chat+system", "alpaca", "completion"):
        if refuses_system(name, row_name):
            continue
        row, fmt, _ = ROWS[row_name]
        (ours, _), (theirs, report) = build(other_pad, row, fmt), build(eot_pad, row, fmt)
        assert (theirs.input_ids, theirs.labels) == (ours.input_ids, ours.labels), listing(eot_pad, theirs)
        assert all(tok[-1] == eot_pad.convert_tokens_to_ids(family.end_of_turn) for tok in trained_runs(theirs))
        assert not any("no end token" in n or "EOS appended" in n for n in report.notes), report.notes
    assert stop_tokens(eot_pad) == stop_tokens(other_pad)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_the_placeholder_finds_the_ends_the_prefix_renders_found(tokenizers, name):
    """Each answer's end is found by a placeholder in the whole conversation; on a template that renders a turn
    the same whatever follows it, that is where the render of the conversation up to the answer ends. Qwen3's
    does not (an empty think block after the last user turn only): there the two differ, and only the
    placeholder's end is right."""
    from engine.data.template import Renderer, training_chat_template

    tok = tokenizers(name, False)
    renderer = Renderer(tok)
    for row_name in ("alpaca", "alpaca+system", "chat", "chat+system", "completion"):
        if refuses_system(name, row_name):
            continue
        row, fmt, _ = ROWS[row_name]
        messages, template = renderer._messages(row, fmt), training_chat_template(tok, fmt)
        full = renderer._apply(messages, False, template, "t")
        for i in (i for i, m in enumerate(messages) if m["role"] == "assistant"):
            start = renderer._content_start(messages, i, full, template, "t")
            end = renderer._content_end(messages, i, start, full, template, "t")
            prefix = full[: renderer._prefix_end(messages, i, full, template, "t")].rstrip()
            if FAMILIES[name].final_eos:  # the render of a prefix ends in the EOS (its `<|` is also `<|user|>`'s)
                prefix = prefix[: prefix.rindex(FAMILIES[name].end_of_turn) + len(FAMILIES[name].end_of_turn)]
            prefix_end = len(prefix)
            assert end is not None
            if name == "qwen3" and i < len(messages) - 1:
                assert (full[start:end], full[start:prefix_end]) == (messages[i]["content"] + "<|im_end|>", "")
            else:
                assert end == prefix_end, (name, row_name, i, full[start:end], full[start:prefix_end])


@pytest.mark.parametrize("name", CHAT_FAMILIES)
def test_a_system_message_after_an_answer_trains_only_the_answers(tokenizers, name):
    """A system message later in the conversation: DeepSeek's templates (R1-Distill, V3/R1) write every system message
    right after the BOS, before the first question. The render of the conversation up to the first answer is then
    no prefix of the row's; the first answer must still start where its text is, not where the two renders part
    (which trained the system prompt, the question and `<｜Assistant｜>` with it). Templates that refuse such a
    conversation say so, naming the row."""
    late = {"messages": [*TURNS[:2], {"role": "system", "content": "Be brief."}, *TURNS[2:]]}
    trains_the_answers_or_is_refused(tokenizers(name, False), FAMILIES[name], late, ["Yellow.", "Red."])


def trains_the_answers_or_is_refused(tok, family, row: dict, answers: list[str]) -> None:
    """The chat row's trained tokens are its answers, each with one end token (the last after the family's prefix of a
    final answer); or the template refuses the conversation, and the error names the row."""
    from engine.errors import DataError

    try:
        ex, _ = build(tok, row, "chat")
    except DataError as e:
        assert str(e).startswith("t.jsonl:1: the model's chat template cannot render this conversation")
        return
    end = family.end_of_turn
    expected = [a + end for a in answers[:-1]] + [family.final_answer_prefix + answers[-1] + end]
    assert [tok.decode(run).strip() for run in trained_runs(ex)] == expected, listing(tok, ex)


def test_a_template_that_writes_an_answer_before_its_prompt_is_refused_naming_the_row(tokenizers):
    """Where not even the whole conversation, rendered with a placeholder as the answer, agrees with the row before
    it (a template that writes something of an answer ahead of it, here its length), the answer's start cannot be
    found: the row is refused by name, never trained from where the renders part."""
    import copy

    from engine.errors import DataError

    tok = copy.deepcopy(tokenizers("qwen2_5", False))
    tok.chat_template = ("{{ messages | selectattr('role', 'equalto', 'assistant') | map(attribute='content') "
                         "| join | length }}" + tok.chat_template)
    with pytest.raises(DataError, match="t.jsonl:1: the model's chat template renders this conversation so that "
                                        "answer 1 cannot be told apart from its prompt"):
        build(tok, {"messages": [TURNS[0], {"role": "assistant", "content": "Yes."}]}, "chat")


def test_text_that_ends_with_the_eos_already_gets_no_second_when_pad_is_eos(tokenizers):
    for name in ("mistral", "llama3", "qwen2_5"):
        tok = tokenizers(name, False)
        assert tok.pad_token == tok.eos_token  # load_tokenizer's fallback
        ex, _ = build(tok, {"text": "The sky was blue." + tok.eos_token}, "text")
        assert ex.input_ids.count(tok.eos_token_id) == 1 and ex.input_ids[-1] == tok.eos_token_id


def test_golden_listing_of_every_family_and_format(tokenizers):
    """tests/fixtures/trained_tokens.txt: every row token by token; a change of what is trained shows here."""
    lines = []
    for name in FAMILIES:
        tok = tokenizers(name, False)
        for row_name, (row, fmt, _) in ROWS.items():
            if refuses_system(name, row_name):
                lines.append(f"{name} / {row_name}: refused (the template has no system role)")
                continue
            ex, _ = build(tok, row, fmt)
            lines.append(f"{name} / {row_name}:\n    {listing(tok, ex)}")
    text = "\n".join(lines) + "\n"
    if os.environ.get("LORAPILOT_REGOLD") or not GOLDEN.exists():
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")


# ---------------------------------------------------------------- what inference is fed

PROMPT_ROWS = {  # questions a person could type into the playground (no alpaca input section)
    "alpaca": ([ALPACA_SYSTEM, {**ALPACA_SYSTEM, "instruction": "What is 35 plus 7?", "output": "42."}], "alpaca"),
    "alpaca-no-system": ([{**ALPACA_SYSTEM, "system": ""}], "alpaca"),
    "chat": ([CHAT_SYSTEM, {"messages": CHAT_SYSTEM["messages"][:2] + [{"role": "assistant", "content": "Ok."}]}],
             "chat"),
    "chat-no-system": ([CHAT], "chat"),
    "completion": ([{"prompt": "Q: What is 35 plus 7?\nA:", "completion": " 42."}], "completion"),
    "text": ([TEXT], "text"),
}


@pytest.mark.parametrize("rows_name", list(PROMPT_ROWS))
@pytest.mark.parametrize("name", list(FAMILIES))
def test_inference_feeds_the_training_prefix_ids(tokenizers, tmp_path, name, rows_name):
    """The playground, chat and sample_prompts build a typed question's ids as training built the row's."""
    rows, fmt = PROMPT_ROWS[rows_name]
    family = FAMILIES[name]
    if not family.system and family.template_file and shared_system_prompt(rows, fmt):
        return  # refused at training (above)
    tok = tokenizers(name, False)
    examples = tokenize_rows(rows, fmt, [f"t:{i}" for i in range(len(rows))], tok, max_seq_length=4096)
    # what the trainer saves with the adapter, read back as the playground and chat read it
    style = PromptStyle(format=fmt, system=shared_system_prompt(rows, fmt))
    save_for_inference(tok, style, tmp_path)
    from engine.model import load_tokenizer
    saved_tok, saved_style = load_tokenizer(str(tmp_path)), load_style(tmp_path)
    assert saved_style == style
    for ex in examples:
        question = ex.question if fmt != "text" else "Once upon a time"
        fed = from_text(saved_tok, question, saved_style).ids
        if fmt == "text":  # a text-trained model is fed the words as written, after the BOS training put first
            bos = [tok.bos_token_id] if FAMILIES[name].text_bos else []
            assert fed == bos + tok(question, add_special_tokens=False)["input_ids"]
            continue
        assert fed == ex.input_ids[: ex.prompt_len], (tok.convert_ids_to_tokens(fed),
                                                       tok.convert_ids_to_tokens(ex.input_ids[: ex.prompt_len]))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_an_empty_system_message_is_none(tokenizers, tmp_path, name):
    """ShareGPT exports often open with {"from": "system", "value": ""}. Kept, the row trained after an empty system
    block that inference (no system prompt shared) never feeds: Qwen's template feeds its default system prompt
    there instead; and templates with no system role refused the row for a system prompt it does not have."""
    import json

    from engine.data import read_rows
    from engine.model import load_tokenizer

    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"conversations": [{"from": "system", "value": " "}, {"from": "human", "value": "What "
                                                   "color is a lemon?"}, {"from": "gpt", "value": "Yellow."}]}) + "\n")
    rows, fmt, sources = read_rows(path)
    [ex] = tokenize_rows(rows, fmt, sources, tokenizers(name, False), max_seq_length=4096)
    style = PromptStyle(format=fmt, system=shared_system_prompt(rows, fmt))
    save_for_inference(tokenizers(name, False), style, tmp_path / "adapter")
    fed = from_text(load_tokenizer(str(tmp_path / "adapter")), ex.question, load_style(tmp_path / "adapter")).ids
    assert fed == ex.input_ids[: ex.prompt_len]


@pytest.mark.parametrize("name", CHAT_FAMILIES)
def test_an_answer_right_after_the_system_prompt_trains_its_words_not_its_role_header(tokenizers, name):
    """An assistant turn that opens the conversation after the system prompt (a persona's greeting, common in
    role-play data): Granite 3.1's template writes its generation prompt only after a turn of the loop, so the
    system prompt alone rendered with one has none, yet is a prefix of the row: the answer was taken to start right
    after it, and `<|start_of_role|>assistant<|end_of_role|>` was trained with it. Templates that refuse such a
    conversation say so, naming the row."""
    greeting = {"messages": [{"role": "system", "content": TERSE}, {"role": "assistant", "content": "Hello there!"},
                             *TURNS[:2]]}
    trains_the_answers_or_is_refused(tokenizers(name, False), FAMILIES[name], greeting, ["Hello there!", "Yellow."])


SYSTEM_LAST_USER_ONLY = [name for name, f in FAMILIES.items() if f.system_in_last_user_only]


@pytest.mark.parametrize("with_pad", [False, True], ids=["no-pad", "pad"])
@pytest.mark.parametrize("name", SYSTEM_LAST_USER_ONLY)
def test_a_system_prompt_left_out_of_training_is_reported_and_the_seam_is_the_training_rows(tokenizers, tmp_path,
                                                                                          name, with_pad):
    """A template that writes the system message only into a last user turn trains no row with it. lorapilot's
    playground, chat and samples feed what training saw (no system prompt); a runtime rendering the saved template
    (Ollama, vLLM, apply_chat_template) puts it in front of the question: exactly the reported difference."""
    tok = tokenizers(name, with_pad)
    rows, fmt = PROMPT_ROWS["chat"]
    system = shared_system_prompt(rows, fmt)
    report = DataReport(path="train.jsonl", format=fmt)
    examples = tokenize_rows(rows, fmt, [f"train.jsonl:{i + 1}" for i in range(len(rows))], tok,
                             max_seq_length=4096, report=report)
    assert report.n_system_left_out == len(rows) and all(ex.system_left_out for ex in examples)
    style = PromptStyle(format=fmt, system=system)
    save_for_inference(tok, style, tmp_path)
    from engine.model import load_tokenizer
    saved_tok = load_tokenizer(str(tmp_path))
    for row, ex in zip(rows, examples):
        assert system not in tok.decode(ex.input_ids)
        fed = from_text(saved_tok, ex.question, load_style(tmp_path)).ids
        assert fed == ex.input_ids[: ex.prompt_len]  # the samples, playground and chat: the training prefix
        runtime = saved_tok.apply_chat_template(row["messages"][:2], tokenize=False, add_generation_prompt=True)
        bos = tok.bos_token or ""
        trained = ex.prompt_text if ex.prompt_text.startswith(bos) else bos + ex.prompt_text
        # the runtime's prompt is the trained one with the system prompt put in front of the question
        assert runtime.replace(system + "\n\n", "", 1).rstrip() == trained.rstrip(), (runtime, trained)
    from engine.config import Config
    from engine.diagnose.preflight import preflight
    (finding,) = [f for f in preflight(examples, Config()) if f.code == "system_prompt_left_out"]
    assert finding.severity == "warning"
    assert finding.message.startswith("The model's chat template leaves the system prompt out of conversations "
                                      "that end with an answer")
    assert "2 of 2 (100.0%) rows train without their system prompt (train.jsonl: lines 1, 2)" in finding.evidence


def test_a_system_prompt_the_template_keeps_is_not_reported(tokenizers):
    """Gemma 3 writes it into the first user turn, Llama 3.1 after its date header: kept, not reported; a row
    without one, or with an empty one, neither."""
    for name in ("gemma3", "llama3_1", "qwen2_5"):
        _, report = build(tokenizers(name, False), CHAT_SYSTEM, "chat")
        assert report.n_system_left_out == 0, name
    empty = {"messages": [{"role": "system", "content": " "}] + TURNS}
    _, report = build(tokenizers("last_user_system", False), empty, "chat")
    assert report.n_system_left_out == 0


@pytest.mark.parametrize("name", [*SYSTEM_LAST_USER_ONLY, "gemma3", "llama3_1", "qwen2_5"])
def test_a_row_that_ends_with_a_user_turn_says_whether_its_answers_read_the_system_prompt(tokenizers, name):
    """A row that ends with a user turn, after its answers: Mistral v0.3's template (and Nemo's, lorapilot's two) writes
    the system message into that last turn, after every trained answer, so the answers train without it, as in a row
    that ends with an answer. It was not reported: the system message was in the row's text, in its masked tail.
    Gemma 3, Llama 3.1 and Qwen2.5 write it before the first question: kept, not reported. Either way the trailing
    question is context, never trained."""
    family, tok = FAMILIES[name], tokenizers(name, False)
    row = {"messages": [{"role": "system", "content": TERSE}, *TURNS[:3]]}
    ex, report = build(tok, row, "chat")
    assert [tok.decode(run).strip() for run in trained_runs(ex)] == ["Yellow." + family.end_of_turn], listing(tok, ex)
    left_out = family.system_in_last_user_only
    assert (ex.system_left_out, report.n_system_left_out) == (left_out, int(left_out)), tok.decode(ex.input_ids)


@pytest.mark.parametrize("name", ["qwen2_5", "gemma3", "mistral_v0_3", "llama3_1"])
def test_an_answer_to_a_question_with_no_text_is_trained_and_said(tokenizers, tmp_path, name):
    """A user turn with no text (null, "", whitespace: a question lost from the data) before an answer: the answer is
    trained as the reply to an empty question, as the template renders it. Said with a count, as an assistant turn
    with no text is (it was silent); a question after the last answer, or a completion row's empty prompt
    (unconditioned text, as TRL reads one), is not such a question."""
    import json

    from engine.data import read_rows

    tok = tokenizers(name, False)
    rows = [{"conversations": [{"from": "human", "value": None}, {"from": "gpt", "value": "Yellow."}]},
            {"messages": [{"role": "user", "content": "What color is a lemon?"}, {"role": "assistant", "content": "Yellow."},
                          {"role": "user", "content": " "}, {"role": "assistant", "content": "Red."}]},
            {"messages": [*TURNS[:2], {"role": "user", "content": ""}]}]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    read, fmt, sources = read_rows(path)
    report = DataReport(path=str(path), format=fmt)
    examples = tokenize_rows(read, fmt, sources, tok, max_seq_length=4096, report=report)
    end = FAMILIES[name].end_of_turn
    assert [[tok.decode(run).strip() for run in trained_runs(ex)] for ex in examples] == \
        [["Yellow." + end], ["Yellow." + end, "Red." + end], ["Yellow." + end]]
    assert report.n_empty_questions == 2
    assert ("user turns with no text before a trained answer: 2; the answer after each is trained as the reply to "
            "an empty question") in report.notes
    completion = DataReport(path=str(path), format="completion")
    tokenize_rows([{"prompt": "", "completion": "Once upon a time."}], "completion", ["c:1"], tok, max_seq_length=4096,
                  report=completion)
    assert completion.n_empty_questions == 0 and not any("user turns" in n for n in completion.notes)


def test_inspect_data_names_the_rows_trained_without_their_system_prompt(tmp_path, capsys):
    import argparse
    import json

    from fixtures.template_families import write_model_dir

    from engine.diagnose import command

    model = write_model_dir(FAMILIES["last_user_system"], tmp_path / "model", with_pad=False)
    rows = [CHAT_SYSTEM, CHAT, CHAT_SYSTEM, CHAT_SYSTEM]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    parser = argparse.ArgumentParser()
    command.add_inspect_arguments(parser)
    assert command.run_inspect(parser.parse_args([str(data), "--model", str(model)])) == 0  # a warning only
    out = " ".join(capsys.readouterr().out.split())
    assert "3 rows train without their system prompt (the chat template leaves it out" in out
    assert "3 of 4 (75.0%) rows train without their system prompt (train.jsonl: lines 1, 3, 4)" in out
    assert "Put the instructions into the first user message" in out


def test_held_out_samples_show_the_question_and_answer_of_the_prompt_fed(tokenizers):
    from types import SimpleNamespace

    from engine.samples import choose_prompts

    tok = tokenizers("llama3", False)
    examples = tokenize_rows([CHAT_SYSTEM], "chat", ["t:1"], tok, max_seq_length=4096) + \
        tokenize_rows([TEXT], "text", ["t:3"], tok, max_seq_length=4096)
    cfg = SimpleNamespace(training=SimpleNamespace(sample_max_new_tokens=8, sample_prompts=[]))
    (prompt,) = choose_prompts(cfg, tok, examples)  # the text row has no prompt: not a sample
    assert (prompt.text, prompt.reference) == ("What color is a lemon?", "Yellow.")
    assert tok.decode(prompt.ids).endswith("What color is a lemon?<|eot_id|><|start_header_id|>assistant"
                                           "<|end_header_id|>\n\n")
    assert "tomato" not in tok.decode(prompt.ids)


@pytest.mark.parametrize("name", ["llama3_base", "mistral_base"])
def test_completion_data_on_a_base_model_is_fed_the_raw_prompt(tokenizers, tmp_path, name):
    tok = tokenizers(name, False)
    save_for_inference(tok, PromptStyle(format="completion"), tmp_path)
    from engine.model import load_tokenizer
    saved = load_tokenizer(str(tmp_path))
    ids = from_text(saved, "Q: What is 35 plus 7?\nA:", load_style(tmp_path)).ids
    assert "Instruction" not in tok.decode(ids)
    assert ids == [tok.bos_token_id] + tok("Q: What is 35 plus 7?\nA:", add_special_tokens=False)["input_ids"]


# ---------------------------------------------------------------- a config.json without bos/eos ids

def test_a_qwen2_config_without_token_ids_loses_no_row(tmp_path):
    """transformers 5 picks Qwen2Tokenizer from a qwen2 config.json and rebuilds a byte-level pipeline from the
    vocabulary: a SentencePiece-style tokenizer.json then lost its spaces (and short answers every token).
    load_tokenizer notices the text does not come back and uses tokenizer.json as it is."""
    import dataclasses
    import json

    from fixtures.template_families import write_model_dir

    from engine.data import inspect_dataset
    from engine.demo.model import demo_data_path

    family = dataclasses.replace(FAMILIES["mistral_base"], config_ids=False)
    d = write_model_dir(family, tmp_path / "qwen2-config", with_pad=False)
    config = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**config, "model_type": "qwen2"}))
    assert config["eos_token_id"] is None and config["bos_token_id"] is None
    from transformers import AutoTokenizer
    as_transformers_loads_it = AutoTokenizer.from_pretrained(str(d))
    assert type(as_transformers_loads_it).__name__ == "Qwen2Tokenizer"  # the cause, still there upstream
    probe = "the answer is yes, 42."
    assert as_transformers_loads_it.decode(as_transformers_loads_it(probe)["input_ids"]) != probe

    from engine.model import load_tokenizer
    with pytest.warns(RuntimeWarning, match="using tokenizer.json as it is"):
        tok = load_tokenizer(str(d))
    assert tok.decode(tok(probe, add_special_tokens=False)["input_ids"]) == probe
    assert tok.eos_token == "</s>"
    report, examples = inspect_dataset(demo_data_path(), tokenizer=tok)
    assert len(examples) == report.n_rows and not report.dropped


def test_an_answer_the_template_cuts_is_said(tokenizers):
    """DeepSeek-R1-Distill's template drops an answer's reasoning (up to `</think>`): trained as rendered, said."""
    reasoning = {"messages": [{"role": "user", "content": "What is 6 plus 28?"},
                              {"role": "assistant", "content": "<think>\n6 plus 28 is 34.\n</think>\n\n34."}]}
    tok = tokenizers("deepseek_r1", False)
    ex, report = build(tok, reasoning, "chat")
    assert tok.decode(trained_runs(ex)[-1]).strip() == "34.<｜end▁of▁sentence｜>"
    assert any(note.startswith("the chat template drops part of some answers") for note in report.notes)
    _, plain = build(tok, CHAT, "chat")
    assert not any("drops part" in note for note in plain.notes)


def test_an_answer_the_template_only_reformats_is_not_said_to_be_cut(tokenizers):
    """Qwen3's template rewrites the last answer's reasoning with its own newlines (`<think>R</think>A` becomes
    `<think>\nR\n</think>\n\nA`): every word is trained, so no note says part of it was dropped; an earlier
    answer's reasoning, which it does drop, still is."""
    tok = tokenizers("qwen3", False)
    for written in ("<think>6 plus 28 is 34.</think>34.", "<think>\n6 plus 28 is 34.\n</think>\n34."):
        row = {"messages": [{"role": "user", "content": "What is 6 plus 28?"},
                            {"role": "assistant", "content": written}]}
        ex, report = build(tok, row, "chat")
        assert "6 plus 28 is 34." in tok.decode(trained_runs(ex)[-1])
        assert not any("drops part" in note for note in report.notes), (written, report.notes)
    row = {"messages": [{"role": "user", "content": "What is 6 plus 28?"},
                        {"role": "assistant", "content": "<think>6 plus 28 is 34.</think>34."},
                        {"role": "user", "content": "And 35 plus 7?"}, {"role": "assistant", "content": "42."}]}
    _, report = build(tok, row, "chat")
    assert any(note.startswith("the chat template drops part of some answers") for note in report.notes)


def test_no_end_token_is_said_plainly(tokenizers, tmp_path):
    import copy

    tok = copy.deepcopy(tokenizers("llama3_base", False))
    tok.eos_token = None
    tok.pad_token = None
    ex, report = build(tok, ALPACA, "alpaca")
    assert any(note.startswith("no end token: the tokenizer names no EOS token") for note in report.notes)
    assert tok.decode(trained_runs(ex)[-1]).strip() == ALPACA["output"]  # trained, and said: nothing ends it


# ---------------------------------------------------------------- the day a row is rendered on

# Two days a run can span: trained before midnight, resumed (or chatted with, or exported) after it.
BEFORE_MIDNIGHT, AFTER_MIDNIGHT = datetime(2026, 12, 5, 23, 59, 59), datetime(2026, 12, 6, 0, 0, 1)


def test_the_fake_clock_reaches_the_template_as_a_server_renders_it(tokenizers, monkeypatch):
    """Llama 3.2's published template, rendered as transformers (and vLLM) render it, writes the faked day: the
    tests below can fail."""
    tok = tokenizers("llama3_2")
    set_clock(monkeypatch, AFTER_MIDNIGHT)
    assert "Today Date: 06 Dec 2026" in tok.apply_chat_template(TURNS[:1], tokenize=False)


@pytest.mark.parametrize("row_name", ["chat", "chat+system", "alpaca+system", "completion"])
@pytest.mark.parametrize("name", CHAT_FAMILIES)
def test_a_row_trains_the_same_tokens_whatever_the_day(tokenizers, monkeypatch, name, row_name):
    """Llama 3.2 writes `Today Date: <today>` into every system block: rendered on two days, the row must be the
    same ids, labels and prompt (a resume after midnight replays the plan of those lengths; the wizard's preview
    and the trainer are the same rows), and the day is the fixed one lorapilot pins, not the clock's."""
    if refuses_system(name, row_name):
        return
    row, fmt, _ = ROWS[row_name]
    tok = tokenizers(name)
    set_clock(monkeypatch, BEFORE_MIDNIGHT)
    before, report = build(tok, row, fmt)
    set_clock(monkeypatch, AFTER_MIDNIGHT)
    after, _ = build(tok, row, fmt)
    assert (after.input_ids, after.labels, after.prompt_len) == (before.input_ids, before.labels, before.prompt_len)
    text = tok.decode(before.input_ids)
    assert "Dec 2026" not in text
    if name == "llama3_2":
        assert "Today Date: 26 Jul 2024" in text
        assert any("date fixed at 26 Jul 2024" in n for n in report.notes), report.notes
    if name == "granite3" and "system" not in row_name:  # its default system message, in its own format
        assert "Today's Date: July 26, 2024." in text
        assert any("date fixed at 26 Jul 2024" in n for n in report.notes), report.notes


@pytest.mark.parametrize("name", CHAT_FAMILIES)
def test_inference_on_another_day_feeds_the_training_prefix(tokenizers, tmp_path, monkeypatch, name):
    """Trained before midnight, prompted after it: the playground, `lorapilot chat` and the samples (the adapter's
    saved tokenizer and prompt style), and a server that renders the saved template itself (transformers'
    apply_chat_template, as vLLM and the model card's snippet do), feed the prefix training fed."""
    from engine.model import load_tokenizer

    rows, fmt = PROMPT_ROWS["chat" if FAMILIES[name].system else "chat-no-system"]
    tok = tokenizers(name)
    set_clock(monkeypatch, BEFORE_MIDNIGHT)
    (ex, *_) = tokenize_rows(rows, fmt, [f"t:{i}" for i in range(len(rows))], tok, max_seq_length=4096)
    save_for_inference(tok, PromptStyle(format=fmt, system=shared_system_prompt(rows, fmt)), tmp_path)
    set_clock(monkeypatch, AFTER_MIDNIGHT)
    saved = load_tokenizer(str(tmp_path))
    assert from_text(saved, ex.question, load_style(tmp_path)).ids == ex.input_ids[: ex.prompt_len]
    if FAMILIES[name].system_in_last_user_only:
        return  # a runtime puts the system prompt into the question there (the test above this section)
    asked = rows[0]["messages"][: next(i for i, m in enumerate(rows[0]["messages"]) if m["role"] == "assistant")]
    served = saved.apply_chat_template(asked, tokenize=False, add_generation_prompt=True)
    bos = tok.bos_token or ""  # written by the template or added by the tokenizer: the same first token
    assert served.removeprefix(bos) == ex.prompt_text.removeprefix(bos)


def test_a_resumed_run_reads_the_tokens_it_was_planned_with(tmp_path, monkeypatch):
    """The trainer's own data path (load_examples, from the config), on the day a run started and on the day it
    resumes: the same examples, so the resume's plan of micro-batches is the one the checkpoint was trained with."""
    import json

    from fixtures.template_families import write_model_dir

    from engine.config import config_from_dict
    from engine.data import load_examples
    from engine.model import load_tokenizer

    model = write_model_dir(FAMILIES["llama3_2"], tmp_path / "llama3_2", with_pad=False)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in [CHAT_SYSTEM, CHAT, CHAT_SYSTEM, CHAT]), encoding="utf-8")
    cfg = config_from_dict({"model": str(model), "dataset": {"path": str(data), "validation_split": 0.25}})
    runs = []
    for day in (BEFORE_MIDNIGHT, AFTER_MIDNIGHT):
        set_clock(monkeypatch, day)
        prepared = load_examples(cfg, load_tokenizer(str(model)))
        runs.append([(e.input_ids, e.labels) for e in prepared.train + prepared.validation])
    assert runs[0] == runs[1]


# ---------------------------------------------------------------- special-token text typed in the data

def _asking(fmt: str, question: str, answer: str) -> dict:
    if fmt == "chat":
        return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
    if fmt == "alpaca":
        return {"instruction": question, "input": "", "output": answer}
    return {"prompt": question, "completion": answer}


@pytest.mark.parametrize("fmt", ["chat", "alpaca", "completion"])
@pytest.mark.parametrize("name", list(FAMILIES))
def test_special_token_text_in_the_data_is_text_not_the_token(tokenizers, name, fmt):
    """A reply (or question) that mentions `<|im_end|>` is about the token: it is trained as the characters written,
    never as the end-of-turn token itself (which would teach the model to stop mid-answer, and train the rest of the
    answer after a stop no generation gets past). The row's only end tokens are those the template writes."""
    family, tok = FAMILIES[name], tokenizers(name, False)
    end = family.end_of_turn or family.eos
    typed = f"Yes. {end} is the end."
    ex, report = build(tok, _asking(fmt, f"What is {end} for?", typed), fmt)
    ref, _ = build(tok, _asking(fmt, "What is x for?", "Yes."), fmt)
    end_id = tok.convert_tokens_to_ids(end)
    assert ex.input_ids.count(end_id) == ref.input_ids.count(end_id), listing(tok, ex)
    (run,) = trained_runs(ex)
    assert run[-1] == end_id and run.count(end_id) == 1, listing(tok, ex)
    prefix = family.final_answer_prefix.strip() + ("\n\n" if family.final_answer_prefix else "")
    assert tok.decode(run[:-1]).strip() == prefix + typed
    assert f"What is {end} for?" in tok.decode(ex.input_ids[: ex.prompt_len])
    assert ex.prompt_text.count(end) == 1 + ref.prompt_text.count(end) and ex.response_text == typed
    assert any(note.startswith(f"special-token text written in the data (such as {end})") for note in report.notes)


@pytest.mark.parametrize("blank", ["", "  \n"], ids=["empty", "whitespace"])
@pytest.mark.parametrize("name", list(FAMILIES))
def test_an_assistant_turn_with_no_text_is_context_not_trained(tokenizers, name, blank):
    """A conversation whose first (or last) answer is empty: trained, it would be the end token alone right after the
    role header, teaching the model to answer nothing. It is kept as context, masked, and counted; the other answer
    is trained as ever. (A row with no answer that has text is dropped, as before.)"""
    tok = tokenizers(name, False)
    first_blank = {"messages": [TURNS[0], {"role": "assistant", "content": blank}, *TURNS[2:]]}
    last_blank = {"messages": [*TURNS[:3], {"role": "assistant", "content": blank}]}
    report = DataReport(path="t.jsonl", format="chat")
    examples = tokenize_rows([first_blank, last_blank, CHAT], "chat", ["t:1", "t:2", "t:3"], tok,
                             max_seq_length=4096, report=report)
    for ex, answer in zip(examples, ["Red.", "Yellow."]):
        (run,) = trained_runs(ex)
        assert answer in tok.decode(run), listing(tok, ex)
    assert len(trained_runs(examples[2])) == 2
    assert "assistant turns with no text, not trained (kept as context): 2;" in " ".join(report.notes)
    everything = tokenize_rows([first_blank], "chat", ["t:1"], tok, max_seq_length=4096, train_on="all")[0]
    assert all(label != IGNORE_INDEX for label in everything.labels[1:])


@pytest.mark.parametrize("name", list(FAMILIES))
def test_an_answer_of_weight_0_is_context_not_trained(tokenizers, name):
    """axolotl's `weight: 0` on a message (engine.data.formats): the turn is rendered as written, masked; the other
    answer is trained with its one end token, as ever."""
    tok = tokenizers(name, False)
    first_off = {"messages": [TURNS[0], {**TURNS[1], "weight": 0}, *TURNS[2:]]}
    last_off = {"messages": [*TURNS[:3], {**TURNS[3], "weight": 0}]}
    examples = tokenize_rows([first_off, last_off], "chat", ["t:1", "t:2"], tok, max_seq_length=4096)
    family = FAMILIES[name]
    end_id = tok.convert_tokens_to_ids(family.end_of_turn if family.template_file else family.eos)
    for ex, row, answer, other in zip(examples, (first_off, last_off), ("Red.", "Yellow."), ("Yellow.", "Red.")):
        (run,) = trained_runs(ex)
        assert tok.decode(run[:-1]).strip().endswith(answer) and run[-1] == end_id, listing(tok, ex)
        assert other not in tok.decode(run), listing(tok, ex)
        plain = tokenize_rows([{"messages": [{k: v for k, v in m.items() if k != "weight"} for m in row["messages"]]}],
                              "chat", ["t:1"], tok, max_seq_length=4096)[0]
        # the same row, fewer tokens trained (an answer trained is tokenized on its own, one as context with its
        # prompt, as a server tokenizes the history: Mistral's `[/INST]Yellow.` may split otherwise)
        assert "".join(tok.decode(ex.input_ids).split()) == "".join(tok.decode(plain.input_ids).split())


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_row_over_the_window_by_its_question_keeps_its_answers_and_its_bos(tokenizers, name):
    """A long first question: the row keeps every answer token and its BOS (the tokenizer's or template's first
    token: OLMo 2's is its EOS too, Command-R's is written twice and kept once), and loses the start of its prompt,
    counted (tests/test_data_masking.py: the other cuts)."""
    family, tok = FAMILIES[name], tokenizers(name, False)
    long = " ".join(["Once upon a time the sky was blue and the grass was green."] * 8) + " What color is a lemon?"
    head = [{"role": "system", "content": TERSE}] if family.system or not family.template_file else []
    row = {"messages": [*head, {"role": "user", "content": long}, *TURNS[1:]]}
    full, _ = build(tok, row, "chat")
    last = max(i for i, label in enumerate(full.labels) if label != IGNORE_INDEX)
    first = min(i for i, label in enumerate(full.labels) if label != IGNORE_INDEX)
    trained = [(tid, label) for tid, label in zip(full.input_ids, full.labels) if label != IGNORE_INDEX]
    report = DataReport(path="t.jsonl", format="chat")
    (ex,) = tokenize_rows([row], "chat", ["t:1"], tok, max_seq_length=last + 1 - 20, report=report)
    assert [(t, label) for t, label in zip(ex.input_ids, ex.labels) if label != IGNORE_INDEX] == trained
    assert ex.prompt_shortened and (report.n_prompt_shortened, report.n_truncated) == (1, 0)
    assert ex.input_ids[-(last + 1 - first):] == full.input_ids[first: last + 1]  # the seam and all after it kept
    if family.row_bos:
        assert ex.input_ids[0] == tok.bos_token_id and ex.input_ids.count(tok.bos_token_id) == \
            full.input_ids.count(tok.bos_token_id)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_row_over_the_window_by_its_masked_tail_loses_the_tail_not_the_prompt(tokenizers, name):
    """What a template writes after the last end token (`\\n` after `<|im_end|>`, Phi-3.5's EOS) is masked and teaches
    nothing: a row over max_seq_length by no more than that loses it, not the first tokens of its prompt (the
    `<|im_start|>` of its system turn, Gemma's `<start_of_turn>`)."""
    tok = tokenizers(name, False)
    full, _ = build(tok, CHAT_SYSTEM if FAMILIES[name].system else CHAT, "chat")
    last = max(i for i, label in enumerate(full.labels) if label != IGNORE_INDEX)
    tail = len(full) - last - 1
    if not tail:
        return  # nothing after the end token: a cut there would lose it
    report = DataReport(path="t.jsonl", format="chat")
    (ex,) = tokenize_rows([CHAT_SYSTEM if FAMILIES[name].system else CHAT], "chat", ["t:1"], tok,
                          max_seq_length=len(full) - tail, report=report)
    assert (ex.input_ids, ex.labels) == (full.input_ids[: last + 1], full.labels[: last + 1]), listing(tok, ex)
    assert ex.prompt_len == full.prompt_len and not ex.prompt_shortened and ex.truncated
    assert (report.n_prompt_shortened, report.n_truncated) == (0, 0)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_an_answer_that_writes_its_own_end_of_turn_token_trains_it_once(tokenizers, name):
    """Data exported with the end token written after each answer (`Yes.<end_of_turn>`, `Yes.<|eot_id|>`) means that
    token: the row trains as the same answer without it (one end token, the template's), not the token's
    characters followed by the token."""
    family, tok = FAMILIES[name], tokenizers(name, False)
    for end in dict.fromkeys([family.end_of_turn or family.eos, family.eos]):
        own = {"messages": [TURNS[0], {"role": "assistant", "content": "Yellow." + end}]}
        ex, report = build(tok, own, "chat")
        ref, _ = build(tok, {"messages": TURNS[:2]}, "chat")
        assert (ex.input_ids, ex.labels) == (ref.input_ids, ref.labels), (end, listing(tok, ex))
        assert any(note.startswith("responses ending in their end token") for note in report.notes), report.notes


def test_whitespace_a_token_takes_in_is_taken_in_across_the_seam_after_the_templates_own(tokenizers):
    """Phi-3.5's `<|assistant|>` takes in the whitespace after it (`rstrip`): the template's `\\n` and an answer's own
    leading newline alike, in one pass and at inference. The answer is then `▁Red.`, as the model writes it after
    the prompt, not a newline the prompt's token already took in, then `R` `ed.`."""
    tok = tokenizers("phi3_5", False)
    ex, _ = build(tok, {"messages": [TURNS[0], {"role": "assistant", "content": "\n\nRed."}]}, "chat")
    ref, _ = build(tok, {"messages": [TURNS[0], {"role": "assistant", "content": "Red."}]}, "chat")
    assert (ex.input_ids, ex.labels) == (ref.input_ids, ref.labels), listing(tok, ex)
    one_pass = tok(tok.apply_chat_template([TURNS[0], {"role": "assistant", "content": "\n\nRed."}], tokenize=False),
                   add_special_tokens=False)["input_ids"]
    assert ex.input_ids == one_pass


@pytest.mark.parametrize("fmt", ["chat", "completion"])
@pytest.mark.parametrize("name", [name for name, f in FAMILIES.items() if f.bos])
def test_a_bos_the_data_writes_first_is_the_rows_one_bos(tokenizers, name, fmt):
    """Data that starts its first message with the BOS text (`<s>What…`, exported from a pipeline that added it) is
    the row without it: one BOS, first, where the template or tokenizer puts one; never a second BOS after the
    template's first header (`[INST] <s>What`)."""
    family, tok = FAMILIES[name], tokenizers(name, False)
    ex, _ = build(tok, _asking(fmt, tok.bos_token + "What color is a lemon?", "Yellow."), fmt)
    ref, _ = build(tok, _asking(fmt, "What color is a lemon?", "Yellow."), fmt)
    if fmt == "completion" and not family.template_file and not family.row_bos:
        # the prompt as written starts the row, and nothing else puts a BOS there (Phi-2): the data's is the one
        assert (ex.input_ids, ex.prompt_len) == ([tok.bos_token_id] + ref.input_ids, ref.prompt_len + 1)
        return
    assert (ex.input_ids, ex.labels, ex.prompt_len) == (ref.input_ids, ref.labels, ref.prompt_len), listing(tok, ex)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_special_token_text_in_an_alpaca_input_is_text(tokenizers, name):
    """The alpaca default template writes a row's instruction and input sections from their own fields, not from the
    user turn's content: their special-token text is text too."""
    family, tok = FAMILIES[name], tokenizers(name, False)
    end = family.end_of_turn or family.eos
    ex, _ = build(tok, {"instruction": f"Explain {end}.", "input": f"the {end} token", "output": "It ends."}, "alpaca")
    ref, _ = build(tok, {"instruction": "Explain x.", "input": "the x token", "output": "It ends."}, "alpaca")
    end_id = tok.convert_tokens_to_ids(end)
    assert ex.input_ids.count(end_id) == ref.input_ids.count(end_id), listing(tok, ex)
    assert tok.decode(ex.input_ids).count(end) == tok.decode(ref.input_ids).count(end) + 2


@pytest.mark.parametrize("name", [name for name, f in FAMILIES.items() if not f.system])
def test_a_template_without_a_system_role_says_so_in_its_fix(tokenizers, name):
    """Gemma 2's and Mistral v0.2's templates raise on a system message ('System role not supported', 'Conversation
    roles must alternate'): the fix names the system prompt, not the order of the roles."""
    from engine.errors import DataError

    with pytest.raises(DataError) as e:
        build(tokenizers(name, False), CHAT_SYSTEM, "chat")
    assert str(e.value).startswith("t.jsonl:1: the model's chat template cannot render this conversation")
    assert e.value.fix.startswith("this model's chat template has no system role: put the system prompt into the "
                                  "first user message"), e.value.fix


@pytest.mark.parametrize("name", CHAT_FAMILIES)
def test_a_text_row_already_rendered_by_the_template_gets_no_second_end(tokenizers, name):
    """A text row that is a conversation the chat template rendered ends with its end token and the newline the
    template writes after it (`<|im_end|>\\n`, `<end_of_turn>\\n`): it ends already; an EOS after that newline would
    be the stray extra end token (`<|im_end|>` `\\n` `<|im_end|>`)."""
    tok = tokenizers(name, False)
    text = tok.apply_chat_template(TURNS, tokenize=False)
    ex, _ = build(tok, {"text": text}, "text")
    as_written = tok(text, add_special_tokens=False)["input_ids"]
    assert ex.input_ids.count(tok.eos_token_id) == as_written.count(tok.eos_token_id), listing(tok, ex)
    assert ex.input_ids[-len(as_written):] == as_written


# meta-llama/Llama-2-7b-chat-hf's chat template (tokenizer_config.json): no generation prompt; a space before each
# answer, a BOS before each user turn
LLAMA2_CHAT = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")


def test_a_template_without_a_generation_prompt_puts_the_space_before_an_answer_into_the_answer(tokenizers):
    """Llama-2-chat writes `[/INST]` + ` ` + answer and has no generation prompt: a server prompts with `…[/INST]`
    and the model writes `▁Yellow.` (one pass over the row tokenizes it so too). The space is the answer's first
    character, not a lone `▁` at the end of the prompt that no server feeds."""
    import copy

    tok = copy.deepcopy(tokenizers("mistral", False))
    tok.chat_template = LLAMA2_CHAT
    ex, _ = build(tok, CHAT, "chat")
    one_pass = tok(tok.apply_chat_template(TURNS, tokenize=False), add_special_tokens=False)["input_ids"]
    assert ex.input_ids == one_pass, listing(tok, ex)
    served = tok(tok.apply_chat_template(TURNS[:1], tokenize=False, add_generation_prompt=True),
                 add_special_tokens=False)["input_ids"]
    assert ex.input_ids[: ex.prompt_len] == served, listing(tok, ex)
    assert [tok.decode(run) for run in trained_runs(ex)] == ["Yellow. </s>", "Red. </s>"]


def test_a_prompt_for_a_model_trained_on_text_rows_keeps_its_special_tokens(tokenizers):
    """Text rows keep the special tokens they write (often conversations rendered already); a model trained on them is
    prompted the same way: special-token text typed into the playground or chat is the token, as it was in training."""
    from engine.data.prompt import prompt_ids

    tok = tokenizers("qwen2_5", False)
    typed = "<|im_start|>user\nWhat color is a lemon?<|im_end|>\n<|im_start|>assistant\n"
    ids, _ = prompt_ids(tok, typed, PromptStyle(format="text"))
    assert ids == tok(typed, add_special_tokens=False)["input_ids"]
    (ex,) = tokenize_rows([{"text": typed + "Yellow.<|im_end|>"}], "text", ["t:1"], tok, max_seq_length=4096)
    assert ex.input_ids[: len(ids)] == ids


@pytest.mark.parametrize("row", [CHAT_SYSTEM, ALPACA_SYSTEM], ids=["chat", "alpaca"])
def test_mistral_v0_3_with_a_system_prompt_trains_the_row_one_pass_tokenizes(tokenizers, row):
    """Mistral v0.3 writes `[/INST]` + ` ` + answer and the system message into a last user turn only, so the
    prompt rendered for an answer (it has the system message) parts from the row (it has none) before the answer.
    The space was then left at the end of the prompt: a lone `▁` trained as context that no prompt fed ends with,
    then `▁34.` as if nothing preceded it (the row decoded to `[/INST]  34.`). It is the answer's first character, as
    without a system prompt: the row is one pass over its render, and the playground feeds the ids before it."""
    tok = tokenizers("mistral_v0_3", False)
    fmt = "chat" if "messages" in row else "alpaca"
    ex, report = build(tok, row, fmt)
    assert report.n_system_left_out == 1
    from engine.data.template import Renderer

    rendered = tok.apply_chat_template(Renderer(tok)._messages(row, fmt), tokenize=False)
    assert "You are terse." not in rendered and "Be brief." not in rendered
    one_pass = tok(rendered, add_special_tokens=False)["input_ids"]
    assert ex.input_ids == one_pass, listing(tok, ex)
    assert ex.prompt_text.endswith("[/INST]"), listing(tok, ex)
    assert tok.convert_ids_to_tokens(ex.input_ids[ex.prompt_len]).startswith("▁") and \
        tok.convert_ids_to_tokens(ex.input_ids[ex.prompt_len]) != "▁", listing(tok, ex)


@pytest.mark.parametrize("name", [name for name, f in FAMILIES.items() if f.final_answer_prefix])
def test_two_answers_in_a_row_train_the_last_as_a_final_answer(tokenizers, name):
    """Two assistant turns in a row (a reply split in two): the second is the conversation's final answer, and Qwen3
    writes a final answer's empty think block, which the model writes itself after the generation prompt: trained
    for a final answer after a question, it was masked for this one (its start found by a placeholder, after the
    block). The final answer trains what it trains after a question."""
    twice = {"messages": [*TURNS[:2], {"role": "assistant", "content": "Red."}]}
    trains_the_answers_or_is_refused(tokenizers(name, False), FAMILIES[name], twice, ["Yellow.", "Red."])


def test_the_question_probe_is_rendered_once_per_template(tokenizers, monkeypatch):
    """Whether the template has a generation prompt (an answer after a question) and a final answer's parts (the
    second of two answers in a row) are both read from one user message rendered with and without the prompt: it
    was rendered, and cached, once for each (four renders); one probe now, two renders, the same tokens trained."""
    from engine.data.template import Renderer

    tok = tokenizers("qwen3", False)
    probes = []
    render = Renderer._apply

    def counted(self, messages, generation, *args):
        if messages == [{"role": "user", "content": "x"}]:
            probes.append(generation)
        return render(self, messages, generation, *args)

    monkeypatch.setattr(Renderer, "_apply", counted)
    twice = {"messages": [*TURNS[:2], {"role": "assistant", "content": "Red."}]}
    ex, _ = build(tok, twice, "chat")
    assert [tok.decode(run) for run in trained_runs(ex)][:2] == ["Yellow.<|im_end|>", "<think>\n\n</think>\n\nRed.<|im_end|>"]
    assert sorted(probes) == [False, True], probes


@pytest.mark.parametrize("name", CHAT_FAMILIES)
def test_an_answer_that_opens_the_conversation_trains_as_one_after_the_system_prompt(tokenizers, name):
    """DeepSeek-V2 writes `Assistant: ` + answer, and its generation prompt is `Assistant:`: the space is the answer's
    (as after a question: one pass over the row joins it to the first word). An answer right after the system prompt
    trained it; one that opens the conversation left it masked, at the end of its prompt. Both train the same
    tokens now, on every template that renders both."""
    from engine.errors import DataError

    tok = tokenizers(name, False)
    greeting = [{"role": "assistant", "content": "Hello there!"}, *TURNS[:2]]
    trained = []
    for messages in (greeting, [{"role": "system", "content": TERSE}, *greeting]):
        try:
            ex, _ = build(tok, {"messages": messages}, "chat")
        except DataError:
            return   # a template that refuses either (no system role, or no answer first) has nothing to compare
        trained.append([tok.decode(run) for run in trained_runs(ex)])
        if name == "deepseek_v2" and messages is greeting:   # the prompt a server renders: BOS, generation prompt
            assert tok.decode(ex.input_ids[:ex.prompt_len]) == "<｜begin▁of▁sentence｜>Assistant:", listing(tok, ex)
    assert trained[0] == trained[1]
