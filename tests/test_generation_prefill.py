"""A generation prompt that prefills what no training row has (DeepSeek-R1's `<think>\\n`): what servers feed is
what training fed, and the user is told (engine/data/prefill.py).

A server renders the chat template saved with the adapter (vLLM --chat-template, the GGUF's template under
llama.cpp --jinja, the merged model's tokenizer): its generation prompt, tokenized, must be the ids training fed
before the answer, which are also the playground's.
"""

from __future__ import annotations

import pytest
from fixtures.template_families import FAMILIES, TERSE, TURNS, load_family

from engine.data import IGNORE_INDEX, DataReport, tokenize_rows
from engine.data.prefill import generation_prefill, removed_prefill, without_prefill
from engine.data.prompt import PromptStyle, save_for_inference
from engine.data.template import model_chat_template, training_chat_template

SYSTEM = [{"role": "system", "content": TERSE}]


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    root, cache = tmp_path_factory.mktemp("families"), {}

    def get(name):
        if name not in cache:
            cache[name] = load_family(FAMILIES[name], root, with_pad=False)
        return cache[name]
    return get


def _prefix_before_last_answer(tok, messages, report=None):
    (ex,) = tokenize_rows([{"messages": messages}], "chat", ["t.jsonl:1"], tok, max_seq_length=4096, report=report)
    starts = [i for i in range(1, len(ex.labels)) if ex.labels[i] != IGNORE_INDEX and ex.labels[i - 1] == IGNORE_INDEX]
    return ex.input_ids[: starts[-1]]


PREFILLED = ["deepseek_r1", "deepseek_v3"]  # DeepSeek-R1-Distill's template, and the full R1's and V3's


@pytest.mark.parametrize("name", PREFILLED)
def test_a_server_rendering_the_saved_template_feeds_deepseek_r1_the_training_prefix(family, tmp_path, name):
    from engine.model import load_tokenizer
    from engine.samples import from_text

    tok = family(name)
    assert generation_prefill(tok, model_chat_template(tok)) == "<think>\n"  # the model's own template prefills
    for head in ([], SYSTEM):
        save_for_inference(tok, PromptStyle("chat", head[0]["content"] if head else ""), tmp_path / str(len(head)))
        saved = load_tokenizer(str(tmp_path / str(len(head))))
        for n in (2, 4):
            messages = head + TURNS[:n]
            prefix = _prefix_before_last_answer(tok, messages)
            served = saved.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
            # the template writes the BOS (the distill's tokenizer adds it too: one kept, as training keeps one)
            ids = saved(served, add_special_tokens=False)["input_ids"]
            assert ids == prefix, (saved.convert_ids_to_tokens(ids), saved.convert_ids_to_tokens(prefix))
        question = TURNS[0]["content"]
        from engine.data.prompt import load_style
        assert from_text(saved, question, load_style(tmp_path / str(len(head)))).ids == \
            _prefix_before_last_answer(tok, head + TURNS[:2])
    assert removed_prefill(saved.chat_template) == "<think>\n"  # the template itself says what was removed


def test_the_data_report_and_the_export_card_say_so(family, tmp_path):
    from engine.config import Config
    from engine.export.facts import _data_facts
    from engine.model import load_tokenizer

    tok = family("deepseek_r1")
    report = DataReport(path="t.jsonl", format="chat")
    _prefix_before_last_answer(tok, TURNS[:2], report)
    (note,) = [n for n in report.notes if "prefills" in n]
    assert "'<think>\\n'" in note and "without that prefill" in note
    save_for_inference(tok, PromptStyle("chat"), tmp_path)
    cfg = Config()
    cfg.dataset.path = str(tmp_path / "gone.jsonl")
    assert note in _data_facts(cfg, load_tokenizer(str(tmp_path))).notes


def test_a_prefill_that_cannot_be_cut_out_is_kept_and_said(family):
    tok = family("deepseek_r1")
    own = model_chat_template(tok)
    split = own.replace("<think>\\n'}}", "<think>' + '\\n'}}")  # the same render, no literal to remove
    assert split != own and generation_prefill(tok, split) == "<think>\n"
    assert without_prefill(tok, split) == (split, "<think>\n", False)
    tok.chat_template = split
    try:
        report = DataReport(path="t.jsonl", format="chat")
        _prefix_before_last_answer(tok, TURNS[:2], report)
    finally:
        tok.chat_template = own
    assert any("servers rendering that template" in n for n in report.notes), report.notes


@pytest.mark.parametrize("name", [n for n, f in FAMILIES.items() if f.template_file and n not in PREFILLED])
def test_every_other_family_trains_and_serves_its_own_template(family, name):
    """Nothing removed: the model's own template, with only its clock pinned where it reads one (Llama 3.2's
    `Today Date`, Granite 3.1's `Today's Date`, Mistral Small 3's default system message: engine/data/template_date.py)."""
    from engine.data.template_date import pin_date

    tok = family(name)
    own = model_chat_template(tok)
    assert training_chat_template(tok, "chat") == pin_date(own)[0]
    assert (pin_date(own)[0] == own) == (name not in ("llama3_2", "granite3", "mistral_v7_tekken"))
