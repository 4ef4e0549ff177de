"""Token-level label masking: every format, three kinds of tokenizer, truncation.

The expected rows are built independently of the code under test: each piece
of the expected text is tokenized on its own and the pieces concatenated
(the templates here only put boundaries where tokens split anyway), with
labels = ids for trained pieces and -100 for the others.
"""

from __future__ import annotations

import copy

import pytest

from engine.data import DataReport, IGNORE_INDEX, preview_segments, tokenize_rows
from engine.data.masking import Masker
from engine.data.template import Renderer
from engine.demo.model import build_tokenizer, demo_data_path
from engine.errors import DataError

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
# ChatML that ignores add_generation_prompt: the assistant header must still be masked.
NO_GEN_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                   "{% endfor %}")
# No end-of-turn token at all: the last answer must get an EOS.
NO_END_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'user' %}User: {{ m['content'] }}\n"
                   "{% else %}Assistant: {{ m['content'] }}\n{% endif %}{% endfor %}"
                   "{% if add_generation_prompt %}Assistant: {% endif %}")


def _with_bos_processor(tok, bos: str):
    from tokenizers import processors

    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tok.convert_tokens_to_ids(bos))])
    return tok


@pytest.fixture(scope="module")
def base():
    return build_tokenizer(demo_data_path())


@pytest.fixture(scope="module")
def chatml(base):
    return copy.deepcopy(base)  # the demo's: ChatML template that renders BOS, tokenizer adds none


@pytest.fixture(scope="module")
def plain(base):
    tok = copy.deepcopy(base)
    tok.chat_template = None
    return tok


@pytest.fixture(scope="module")
def plain_bos(plain):
    return _with_bos_processor(copy.deepcopy(plain), "<s>")  # like Llama-2's: adds a BOS itself


@pytest.fixture(scope="module")
def llama3(base):
    tok = copy.deepcopy(base)
    tok.add_special_tokens({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>",
                            "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]})
    tok.chat_template = LLAMA3_TEMPLATE
    return _with_bos_processor(tok, "<|begin_of_text|>")  # template AND tokenizer add BOS: the classic double


def templated(base, template):
    tok = copy.deepcopy(base)
    tok.chat_template = template
    return tok


def expected(tok, pieces, bos: bool = False):
    ids, labels = ([tok.bos_token_id], [IGNORE_INDEX]) if bos else ([], [])
    for text, trained in pieces:
        part = tok(text, add_special_tokens=False)["input_ids"]
        ids += part
        labels += part if trained else [IGNORE_INDEX] * len(part)
    labels[0] = IGNORE_INDEX
    return ids, labels


def build(tok, row, fmt, *, max_seq_length=512, train_on="completions", source="t.jsonl:1"):
    rendered = Renderer(tok, train_on).render(row, fmt, source)
    return Masker(tok, max_seq_length).build(rendered, source)


def assert_row(tok, row, fmt, pieces, *, bos=False, **kw):
    ex = build(tok, row, fmt, **kw)
    ids, labels = expected(tok, pieces, bos)
    assert ex.input_ids == ids, tok.convert_ids_to_tokens(ex.input_ids)
    assert ex.labels == labels
    assert ex.trained_tokens == sum(label != IGNORE_INDEX for label in labels)
    if tok.bos_token_id in ids:
        assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    return ex


def trained_ids(ex):
    return [t for t, label in zip(ex.input_ids, ex.labels) if label != IGNORE_INDEX]


ALPACA = {"instruction": "Give the plural of the word.", "input": "box", "output": "The plural of box is boxes."}
CHAT = {"messages": [{"role": "system", "content": "You are terse."},
                     {"role": "user", "content": "What color is a lemon?"},
                     {"role": "assistant", "content": "Yellow."},
                     {"role": "user", "content": "And a tomato?"},
                     {"role": "assistant", "content": "Red."}]}


# ---------------------------------------------------------------- ChatML (the demo tokenizer)

def test_chatml_alpaca(chatml):
    ex = assert_row(chatml, ALPACA, "alpaca", [
        ("<s><|im_start|>user\nGive the plural of the word.\n\nbox<|im_end|>\n<|im_start|>assistant\n", False),
        ("The plural of box is boxes.<|im_end|>", True),
        ("\n", False)])  # the newline after <|im_end|> is not the model's to learn
    im_end = chatml.convert_tokens_to_ids("<|im_end|>")
    assert trained_ids(ex)[-1] == im_end and trained_ids(ex).count(im_end) == 1
    assert chatml.eos_token_id not in ex.input_ids  # no stray EOS after the end-of-turn token
    assert ex.prompt_text.endswith("<|im_start|>assistant\n") and ex.response_text == ALPACA["output"]
    assert ex.source == "t.jsonl:1" and ex.full_length == len(ex) and not ex.truncated


def test_chatml_alpaca_without_input_and_with_system(chatml):
    row = {"instruction": "What is 6 plus 28?", "input": "", "output": "34.", "system": "Be brief."}
    assert_row(chatml, row, "alpaca", [
        ("<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 6 plus 28?<|im_end|>\n"
         "<|im_start|>assistant\n", False), ("34.<|im_end|>", True), ("\n", False)])


def test_chatml_completion(chatml):
    assert_row(chatml, {"prompt": "What is 35 plus 7?", "completion": "42."}, "completion", [
        ("<s><|im_start|>user\nWhat is 35 plus 7?<|im_end|>\n<|im_start|>assistant\n", False),
        ("42.<|im_end|>", True), ("\n", False)])


def test_chatml_multi_turn_with_system(chatml):
    ex = assert_row(chatml, CHAT, "chat", [
        ("<s><|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nWhat color is a lemon?<|im_end|>\n"
         "<|im_start|>assistant\n", False),
        ("Yellow.<|im_end|>", True),
        ("\n<|im_start|>user\nAnd a tomato?<|im_end|>\n<|im_start|>assistant\n", False),
        ("Red.<|im_end|>", True),
        ("\n", False)])
    assert trained_ids(ex).count(chatml.convert_tokens_to_ids("<|im_end|>")) == 2  # one per assistant turn
    # the prompt samples feed is the one before the first answer (tokenized alone, as inference does)
    assert ex.response_text == "Yellow." and ex.prompt_text.endswith("lemon?<|im_end|>\n<|im_start|>assistant\n")
    assert ex.input_ids[:ex.prompt_len] == chatml(ex.prompt_text, add_special_tokens=False)["input_ids"]


def test_response_also_in_prompt_is_masked_by_offset_not_search(chatml):
    row = {"messages": [{"role": "user", "content": "Reply yes."}, {"role": "assistant", "content": "yes"},
                        {"role": "user", "content": "yes"}, {"role": "assistant", "content": "yes"}]}
    ex = assert_row(chatml, row, "chat", [
        ("<s><|im_start|>user\nReply yes.<|im_end|>\n<|im_start|>assistant\n", False), ("yes<|im_end|>", True),
        ("\n<|im_start|>user\nyes<|im_end|>\n<|im_start|>assistant\n", False), ("yes<|im_end|>", True),
        ("\n", False)])
    assert chatml.decode(trained_ids(ex)) == "yes<|im_end|>yes<|im_end|>"


def test_chatml_text_is_trained_whole_with_one_eos(chatml):
    ex = assert_row(chatml, {"text": "The color of a lemon is yellow."}, "text",
                    [("The color of a lemon is yellow.</s>", True)])
    assert ex.labels[0] == IGNORE_INDEX  # nothing predicts position 0
    assert ex.input_ids.count(chatml.eos_token_id) == 1 and ex.labels[-1] == chatml.eos_token_id


def test_text_that_already_ends_with_eos_gets_no_second(chatml):
    ex = build(chatml, {"text": "Red.</s>"}, "text")
    assert ex.input_ids.count(chatml.eos_token_id) == 1


def test_response_written_with_its_own_eos_gets_no_second(chatml, plain):
    for tok in (chatml, plain):
        ex = build(tok, {"prompt": "Q", "completion": "A.</s>"}, "completion")
        assert ex.input_ids.count(tok.eos_token_id) == (0 if tok is chatml else 1)
        assert ex.response_text == "A."


def test_train_on_all(chatml):
    ex = build(chatml, ALPACA, "alpaca", train_on="all")
    assert ex.labels[0] == IGNORE_INDEX and ex.labels[1:] == ex.input_ids[1:]
    assert ex.input_ids.count(chatml.bos_token_id) == 1


def test_labels_are_not_shifted(chatml):
    ex = build(chatml, ALPACA, "alpaca")
    assert all(label in (IGNORE_INDEX, tid) for tid, label in zip(ex.input_ids, ex.labels))


# ---------------------------------------------------------------- no chat template: the default template

def test_plain_alpaca_default_template(plain):
    ex = assert_row(plain, ALPACA, "alpaca", [
        ("### Instruction:\nGive the plural of the word.\n\n### Input:\nbox\n\n### Response:\n", False),
        ("The plural of box is boxes.</s>", True)])
    assert ex.input_ids[-1] == plain.eos_token_id and ex.labels[-1] == plain.eos_token_id
    assert plain.bos_token_id not in ex.input_ids  # this tokenizer adds no BOS, so neither do we


def test_plain_alpaca_without_input(plain):
    assert_row(plain, {"instruction": "What is 6 plus 28?", "input": "", "output": "34."}, "alpaca", [
        ("### Instruction:\nWhat is 6 plus 28?\n\n### Response:\n", False), ("34.</s>", True)])


def test_plain_bos_is_added_once_when_the_tokenizer_adds_one(plain_bos):
    ex = assert_row(plain_bos, ALPACA, "alpaca", [
        ("### Instruction:\nGive the plural of the word.\n\n### Input:\nbox\n\n### Response:\n", False),
        ("The plural of box is boxes.</s>", True)], bos=True)
    assert ex.input_ids[:2] != [plain_bos.bos_token_id] * 2


def test_plain_text_with_bos(plain_bos):
    ex = assert_row(plain_bos, {"text": "Red."}, "text", [("Red.</s>", True)], bos=True)
    assert ex.labels[0] == IGNORE_INDEX and ex.labels[1:] == ex.input_ids[1:]


def test_plain_completion(plain):
    assert_row(plain, {"prompt": "Q: What is 35 plus 7?\nA:", "completion": " 42."}, "completion", [
        ("Q: What is 35 plus 7?\nA:", False), (" 42.</s>", True)])


def test_plain_multi_turn_with_system(plain):
    ex = assert_row(plain, CHAT, "chat", [
        ("You are terse.\n\n### Instruction:\nWhat color is a lemon?\n\n### Response:\n", False),
        ("Yellow.</s>", True),
        ("\n\n### Instruction:\nAnd a tomato?\n\n### Response:\n", False),
        ("Red.</s>", True)])
    assert trained_ids(ex).count(plain.eos_token_id) == 2


# ---------------------------------------------------------------- Llama-3-style template

def test_llama3_one_bos_although_template_and_tokenizer_both_add_it(llama3):
    assert llama3("x")["input_ids"][0] == llama3.bos_token_id  # the tokenizer would add one...
    assert llama3.apply_chat_template(CHAT["messages"], tokenize=False).startswith("<|begin_of_text|>")  # ...and so does the template
    ex = build(llama3, CHAT, "chat")
    assert ex.input_ids.count(llama3.bos_token_id) == 1 and ex.input_ids[0] == llama3.bos_token_id


def test_llama3_multi_turn(llama3):
    ex = assert_row(llama3, CHAT, "chat", [
        ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
         "<|start_header_id|>user<|end_header_id|>\n\nWhat color is a lemon?<|eot_id|>"
         "<|start_header_id|>assistant<|end_header_id|>\n\n", False),
        ("Yellow.<|eot_id|>", True),
        ("<|start_header_id|>user<|end_header_id|>\n\nAnd a tomato?<|eot_id|>"
         "<|start_header_id|>assistant<|end_header_id|>\n\n", False),
        ("Red.<|eot_id|>", True)])
    eot = llama3.convert_tokens_to_ids("<|eot_id|>")
    assert trained_ids(ex).count(eot) == 2 and ex.labels[-1] == eot
    assert llama3.eos_token_id not in ex.input_ids  # <|eot_id|> ends the turn; no stray EOS


def test_llama3_alpaca(llama3):
    assert_row(llama3, ALPACA, "alpaca", [
        ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nGive the plural of the word.\n\nbox<|eot_id|>"
         "<|start_header_id|>assistant<|end_header_id|>\n\n", False),
        ("The plural of box is boxes.<|eot_id|>", True)])


# ---------------------------------------------------------------- unusual templates

def test_template_without_generation_prompt_still_masks_the_header(base):
    tok = templated(base, NO_GEN_TEMPLATE)
    assert_row(tok, CHAT, "chat", [
        ("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nWhat color is a lemon?<|im_end|>\n"
         "<|im_start|>assistant\n", False),
        ("Yellow.<|im_end|>", True),
        ("\n<|im_start|>user\nAnd a tomato?<|im_end|>\n<|im_start|>assistant\n", False),
        ("Red.<|im_end|>", True),
        ("\n", False)])


def test_template_without_end_token_gets_eos_after_the_last_answer(base):
    tok = templated(base, NO_END_TEMPLATE)
    row = {"messages": CHAT["messages"][1:]}
    ex = assert_row(tok, row, "chat", [
        ("User: What color is a lemon?\nAssistant: ", False), ("Yellow.", True),
        ("\nUser: And a tomato?\nAssistant: ", False), ("Red.</s>", True), ("\n", False)])
    assert ex.input_ids.count(tok.eos_token_id) == 1


def test_template_without_end_token_leaves_earlier_answers_as_a_server_renders_them(base):
    """The choice pinned: the EOS goes after the last answer only. It is where the answer being generated ends
    (generation stops on it, it is never rendered back); an earlier answer is history, and a server rendering the
    saved template writes it with no EOS, so a follow-up is fed the training prefix id for id (an EOS after every
    answer would teach a history no server sends). Nor does an earlier answer teach to run on: the `User:` header
    after it is masked, so nothing is trained to follow it."""
    from engine.data.prompt import PromptStyle, prompt_ids

    tok = templated(base, NO_END_TEMPLATE)
    messages = CHAT["messages"][1:]
    ex = build(tok, {"messages": messages}, "chat")
    last = max(i for i in range(1, len(ex.labels)) if ex.labels[i] != IGNORE_INDEX and ex.labels[i - 1] == IGNORE_INDEX)
    served = tok.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True,
                                     return_dict=True)["input_ids"]
    assert list(served) == ex.input_ids[:last], tok.convert_ids_to_tokens(ex.input_ids[:last])
    history = [(messages[0]["content"], messages[1]["content"])]
    assert prompt_ids(tok, messages[2]["content"], PromptStyle("chat"), history)[0] == ex.input_ids[:last]
    after_first = max(i for i in range(last) if ex.labels[i] != IGNORE_INDEX) + 1  # the token after "Yellow."
    assert ex.labels[after_first] == IGNORE_INDEX and tok.eos_token_id not in ex.input_ids[:last]


def test_template_without_end_token_with_train_on_all_ends_every_answer_in_the_eos(base):
    """train_on: all trains the `User:` header after an earlier answer too: without an EOS there, the model would learn
    to write the user's next turn after an answer, which no stop token ends. Every answer ends in the EOS instead."""
    tok = templated(base, NO_END_TEMPLATE)
    row = {"messages": CHAT["messages"][1:]}
    ex = assert_row(tok, row, "chat", [
        ("User: What color is a lemon?\nAssistant: ", True), ("Yellow.</s>", True),
        ("\nUser: And a tomato?\nAssistant: ", True), ("Red.</s>", True), ("\n", True)], train_on="all")
    assert ex.input_ids.count(tok.eos_token_id) == 2


def test_template_that_refuses_the_conversation_names_the_row(base):
    tok = templated(base, "{% for m in messages %}{% if m['role'] == 'system' %}"
                          "{{ raise_exception('System role not supported') }}{% endif %}{{ m['content'] }}{% endfor %}")
    with pytest.raises(DataError, match=r"data\.jsonl:7: .*System role not supported"):
        Renderer(tok).render(CHAT, "chat", "data.jsonl:7")


# ---------------------------------------------------------------- rows with nothing to train

@pytest.mark.parametrize("row,fmt,reason", [
    ({"instruction": "Q", "input": "", "output": ""}, "alpaca", "empty response"),
    ({"instruction": "Q", "input": "", "output": "  \n"}, "alpaca", "empty response"),
    ({"messages": [{"role": "user", "content": "Q"}]}, "chat", "no assistant turn"),
    ({"prompt": "Q", "completion": ""}, "completion", "empty response"),
    ({"text": " "}, "text", "empty text"),
])
def test_rows_with_nothing_to_train_are_dropped_with_a_reason(chatml, row, fmt, reason):
    assert build(chatml, row, fmt) == reason


# ---------------------------------------------------------------- truncation

def _long_prompt_row(n_words: int, answer: str = "Red."):
    return {"instruction": " ".join(["lemon"] * n_words), "input": "", "output": answer}


def test_fits_exactly_is_not_truncated(chatml):
    ex = build(chatml, ALPACA, "alpaca")
    again = build(chatml, ALPACA, "alpaca", max_seq_length=len(ex))
    assert again.input_ids == ex.input_ids and not again.truncated


def test_long_prompt_is_shortened_so_the_whole_response_fits(chatml):
    full = build(chatml, _long_prompt_row(60), "alpaca")
    ex = build(chatml, _long_prompt_row(60), "alpaca", max_seq_length=32)
    assert len(ex) == 32 and ex.prompt_shortened and ex.truncated
    assert ex.input_ids[0] == chatml.bos_token_id                     # BOS kept
    assert trained_ids(ex) == trained_ids(full) and ex.response_tokens_lost == 0
    # the row ends with the prompt's last token and the whole answer; the masked newline after its end token went
    # first (it teaches nothing), so the prompt keeps one more token
    k = len(trained_ids(full))
    last = max(i for i, label in enumerate(full.labels) if label != IGNORE_INDEX)
    assert ex.input_ids[-k - 1:] == full.input_ids[last - k: last + 1]
    assert ex.full_length == len(full) and ex.trained_tokens_full == full.trained_tokens


def test_long_response_is_cut_at_the_end_and_counted(chatml):
    row = {"instruction": "Q", "input": "", "output": " ".join(["yellow"] * 80)}
    full = build(chatml, row, "alpaca")
    ex = build(chatml, row, "alpaca", max_seq_length=40)
    assert ex.input_ids == full.input_ids[:40] and ex.labels == full.labels[:40]
    assert ex.truncated and not ex.prompt_shortened and ex.response_tokens_lost == full.trained_tokens - ex.trained_tokens > 0


def test_row_too_long_for_both_is_dropped(chatml):
    row = _long_prompt_row(60, answer=" ".join(["yellow"] * 60))
    assert build(chatml, row, "alpaca", max_seq_length=32) == "too long"


def test_report_counts_truncation(chatml):
    rows = [ALPACA, _long_prompt_row(60), {"instruction": "Q", "input": "", "output": " ".join(["yellow"] * 80)},
            _long_prompt_row(60, answer=" ".join(["yellow"] * 60)), {"instruction": "Q", "input": "", "output": ""}]
    report = DataReport(path="t.jsonl", format="alpaca")
    examples = tokenize_rows(rows, "alpaca", [f"t.jsonl:{i + 1}" for i in range(5)], chatml,
                             max_seq_length=40, report=report)
    assert [e.source for e in examples] == ["t.jsonl:1", "t.jsonl:2", "t.jsonl:3"]
    assert report.dropped == {"too long": 1, "empty response": 1}
    assert report.n_prompt_shortened == 1 and report.n_truncated == 1
    assert all(len(e) <= 40 and e.trained_tokens > 0 for e in examples)


# ---------------------------------------------------------------- preview

def test_preview_segments_reassemble_the_row(chatml):
    ex = build(chatml, CHAT, "chat")
    runs = preview_segments(ex, chatml)
    assert [t for t, trained in runs if trained] == ["Yellow.<|im_end|>", "Red.<|im_end|>"]
    assert "".join(t for t, _ in runs) == chatml.decode(ex.input_ids)


def test_bos_already_in_the_text_is_not_added_again(plain_bos):
    ex = build(plain_bos, {"text": "<s>Red."}, "text")
    assert ex.input_ids.count(plain_bos.bos_token_id) == 1 and ex.input_ids[0] == plain_bos.bos_token_id


def test_template_that_renders_bos_twice_gives_one(base):
    from engine.demo.model import CHATML_TEMPLATE

    tok = templated(base, "{{ bos_token }}" + CHATML_TEMPLATE)
    ex = build(tok, ALPACA, "alpaca")
    assert ex.input_ids.count(tok.bos_token_id) == 1 and ex.input_ids[0] == tok.bos_token_id


def test_conversation_opening_with_the_assistant_masks_its_header(chatml):
    row = {"messages": [{"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Yes?"}]}
    assert_row(chatml, row, "chat", [
        ("<s><|im_start|>assistant\n", False), ("Hello.<|im_end|>", True),
        ("\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", False), ("Yes?<|im_end|>", True),
        ("\n", False)])


@pytest.mark.parametrize("tok_name", ["chatml", "plain", "llama3"])
@pytest.mark.parametrize("row, fmt, question", [
    (ALPACA, "alpaca", "Give the plural of the word.\n\nbox"),
    ({"instruction": "What is 6 plus 28?", "input": "", "output": "34."}, "alpaca", "What is 6 plus 28?"),
    ({"prompt": "What is 35 plus 7? ", "completion": "42."}, "completion", "What is 35 plus 7?"),
    (CHAT, "chat", "What color is a lemon?"),  # the turn before the first answer: the prompt samples feed
    ({"text": "Red."}, "text", ""),
])
def test_the_question_is_the_users_turn_without_the_templates_markup(request, tok_name, row, fmt, question):
    """The Samples panel shows it above each answer: the words as written, not the rendered prompt."""
    ex = build(request.getfixturevalue(tok_name), row, fmt)
    assert ex.question == question
    assert all(part in ex.prompt_text for part in question.split("\n\n"))  # the same words the model is fed


# ---------------------------------------------------------------- rows as real datasets write them

def test_an_answer_with_weight_0_is_context_not_trained(chatml, plain):
    """axolotl's ShareGPT `weight: 0`: the turn was trained as if the key were not there."""
    row = {"messages": [{"role": "user", "content": "What color is a lemon?"},
                        {"role": "assistant", "content": "Blue.", "weight": 0},
                        {"role": "user", "content": "And a tomato?"}, {"role": "assistant", "content": "Red."}]}
    renderer = Renderer(chatml)
    ex = Masker(chatml, 512).build(renderer.render(row, "chat", "t.jsonl:1"), "t.jsonl:1")
    ids, labels = expected(chatml, [
        ("<s><|im_start|>user\nWhat color is a lemon?<|im_end|>\n<|im_start|>assistant\nBlue.<|im_end|>\n"
         "<|im_start|>user\nAnd a tomato?<|im_end|>\n<|im_start|>assistant\n", False),
        ("Red.<|im_end|>", True), ("\n", False)])
    assert (ex.input_ids, ex.labels) == (ids, labels)
    assert any("weight 0" in n for n in renderer.notes)
    # the prompt samples feed is the one before the first trained answer
    assert ex.response_text == "Red." and ex.prompt_text.endswith("tomato?<|im_end|>\n<|im_start|>assistant\n")
    assert_row(plain, row, "chat", [
        ("### Instruction:\nWhat color is a lemon?\n\n### Response:\nBlue.</s>\n\n### Instruction:\nAnd a tomato?\n\n"
         "### Response:\n", False), ("Red.</s>", True)])
    only = {"messages": [*row["messages"][:2], {"role": "assistant", "content": "", "weight": 1}]}
    assert build(chatml, only, "chat") == "every answer has weight 0"
    assert build(chatml, row, "chat", train_on="all").trained_tokens == len(ids) - 1   # all is all


@pytest.mark.parametrize("messages,pieces", [
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yes?"}, {"role": "user", "content": "Bye"}],
     [("<s><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", False), ("Yes?<|im_end|>", True),
      ("\n<|im_start|>user\nBye<|im_end|>\n", False)]),
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yes?"},
      {"role": "assistant", "content": "Hello?"}],
     [("<s><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", False), ("Yes?<|im_end|>", True),
      ("\n<|im_start|>assistant\n", False), ("Hello?<|im_end|>", True), ("\n", False)]),
    ([{"role": "user", "content": "Hi"}, {"role": "system", "content": "Be terse."},
      {"role": "assistant", "content": "Yes?"}],
     [("<s><|im_start|>user\nHi<|im_end|>\n<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>assistant\n", False),
      ("Yes?<|im_end|>", True), ("\n", False)]),
], ids=["ends on a user turn", "two answers in a row", "system turn not first"])
def test_conversations_out_of_the_usual_order_train_the_answers_only(chatml, messages, pieces):
    assert_row(chatml, {"messages": messages}, "chat", pieces)


def test_a_sharegpt_file_as_hub_datasets_write_it_trains_the_answers_exactly(tmp_path, chatml):
    """The reader and the renderer together, from a file: a BOM and CRLF, the Gemma-style role "model", a number as
    content, content parts, a null answer, weight 0, a messages column of JSON text: the trained tokens are exactly
    each trained answer and its end token."""
    import json

    from engine.data import read_rows

    rows = [{"conversations": [{"from": "human", "value": [{"type": "text", "text": "What is 6 plus 28?"}]},
                               {"from": "model", "value": 34}]},
            {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": None},
                               {"from": "human", "value": "Hello?"}, {"from": "bot", "value": "Hello."}]},
            {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "No.", "weight": 0},
                               {"from": "human", "value": "Hi!"}, {"from": "gpt", "value": "Yes.", "weight": 1}]},
            {"conversations": json.dumps([{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Red."}])}]
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(json.dumps(r) for r in rows).encode())
    read, fmt, sources = read_rows(path)
    report = DataReport(path=str(path), format=fmt)
    examples = tokenize_rows(read, fmt, sources, chatml, max_seq_length=512, report=report)
    assert [chatml.decode(trained_ids(e)) for e in examples] == ["34<|im_end|>", "Hello.<|im_end|>", "Yes.<|im_end|>",
                                                                 "Red.<|im_end|>"]
    assert [e.source for e in examples] == [f"{path}:{n}" for n in (1, 2, 3, 4)]
    assert report.n_empty_turns == 1 and not report.dropped


def test_trls_conversational_prompt_completion_trains_the_completion_only(tmp_path, chatml):
    import json

    from engine.data import read_rows

    row = {"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "No."},
                      {"role": "user", "content": "Hi!"}], "completion": [{"role": "assistant", "content": "Yes."}]}
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    read, fmt, sources = read_rows(path)
    [ex] = tokenize_rows(read, fmt, sources, chatml, max_seq_length=512)
    assert chatml.decode(trained_ids(ex)) == "Yes.<|im_end|>"
