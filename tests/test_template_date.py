"""The clock a chat template reads is pinned in the template lorapilot trains, saves and exports
(engine/data/template_date.py): any template, any strftime format, beside a removed prefill.

Llama 3.2's own rows are checked token by token in tests/test_template_families.py; these are the other shapes a
template that reads the clock takes (Granite's and Mistral-Small's ask other formats, without a date_string)."""

from __future__ import annotations

from datetime import datetime

import pytest
from chat_families import family_tokenizer
from fixtures.template_families import FAMILIES, load_family, set_clock

from engine.data.prefill import removed_prefill
from engine.data.template import Renderer, training_chat_template
from engine.data.template_date import pin_date

CHAT = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
# In the manner of Granite 3 and Mistral-Small 3.1: the day, in two formats, with no date_string to override it
TWO_FORMATS = ("{{- 'Today is ' + strftime_now('%B %d, %Y') + ' (' + strftime_now(\"%Y-%m-%d\") + ').\\n' }}"
               "{%- for m in messages %}{{ m['role'] + ': ' + m['content'] + eos_token + '\\n' }}{%- endfor %}"
               "{%- if add_generation_prompt %}{{ 'assistant: ' }}{%- endif %}")


def test_every_format_a_template_asks_renders_the_fixed_day(monkeypatch):
    tok = family_tokenizer("qwen2.5")
    tok.chat_template = TWO_FORMATS
    set_clock(monkeypatch, datetime(2026, 12, 6))
    assert tok.apply_chat_template(CHAT, tokenize=False).startswith("Today is December 06, 2026 (2026-12-06)")
    renderer = Renderer(tok)
    row = renderer.render({"messages": CHAT}, "chat", "t.jsonl:1")
    assert row.prompt_text.startswith("Today is July 26, 2024 (2024-07-26).\n")
    assert any("date fixed at 26 Jul 2024" in n for n in renderer.notes)
    # the template saved with the adapter: a server rendering it on any day writes the same
    tok.chat_template = training_chat_template(tok, "chat")
    assert tok.apply_chat_template(CHAT, tokenize=False).startswith("Today is July 26, 2024 (2024-07-26).\n")


def test_a_pinned_template_is_pinned_once():
    pinned, note = pin_date(TWO_FORMATS)
    assert note and pin_date(pinned) == (pinned, None)
    assert pin_date("{{ messages[0]['content'] }}") == ("{{ messages[0]['content'] }}", None)  # no clock: as it is


def test_a_format_that_is_no_literal_is_kept_and_said():
    template = "{%- set f = '%d %b %Y' %}{{ strftime_now(f) }}{{ messages[0]['content'] }}"
    kept, note = pin_date(template)
    assert kept == template and "cannot fix" in note


@pytest.mark.parametrize("clock", [datetime(2026, 12, 5, 23, 59), datetime(2026, 12, 6, 0, 1)])
def test_the_date_is_pinned_beside_a_removed_prefill(tmp_path, monkeypatch, clock):
    """DeepSeek-R1's prefill is removed and said in a comment that must stay the template's first line
    (engine/data/prefill.py reads it back from the saved template); a clock in the same template is pinned too."""
    tok = load_family(FAMILIES["deepseek_r1"], tmp_path, with_pad=False)
    tok.chat_template = "{{- strftime_now('%d %b %Y') + '\\n' }}" + tok.chat_template
    set_clock(monkeypatch, clock)
    saved = training_chat_template(tok, "chat")
    assert removed_prefill(saved) == "<think>\n"
    tok.chat_template = saved
    assert tok.apply_chat_template(CHAT[:1], tokenize=False, add_generation_prompt=True).startswith("26 Jul 2024\n")
