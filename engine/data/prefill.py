"""A generation prompt that writes more than training fed: the prefill, and the template without it.

DeepSeek-R1-Distill's chat template ends its generation prompt with `<think>\\n`, yet renders every answer of a
conversation without its reasoning (what precedes `</think>` is dropped): no training row has `<think>\\n` after
`<｜Assistant｜>`, and the adapter learns to answer right after it. A server that renders the model's template
(vLLM, llama.cpp --jinja, transformers' apply_chat_template) would prefill `<think>\\n` and prompt the model as
it never trained. lorapilot's playground, chat and samples feed the training prefix; so that every server does
too, the template training uses, saves with the adapter and every export carries is the model's with that prefill
removed, when the prefill is one string literal of the template and its removal changes nothing else (checked by
rendering); a Jinja comment at the top of the template says so. Otherwise the template is kept as it is and the
data report says what servers will add.

The prefill is what the generation prompt of a one-question conversation writes after the point where that
conversation's answer starts in a training row (found with a placeholder answer). A template whose answers start
with text of the template's own (Qwen3's empty think block) trains that text as the model's: its generation
prompt is shorter than the training prefix, not longer, and has no prefill.
"""

from __future__ import annotations

import json
import re

from engine.data.template import _PLACEHOLDER

_MARK = "{#- lorapilot: the generation prompt's prefill %s is removed: no training row has it -#}\n"
_MARK_RE = re.compile(r"^\{#- lorapilot: the generation prompt's prefill (\".*?\") is removed")
_PROBE = [{"role": "user", "content": "x"}]
_CHECK = [{"role": "system", "content": "s"}, {"role": "user", "content": "x"}, {"role": "assistant", "content": "y"},
          {"role": "user", "content": "z"}]


def _apply(tokenizer, messages: list[dict], generation: bool, template: str) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation,
                                         chat_template=template)


def generation_prefill(tokenizer, template: str) -> str:
    """What the template's generation prompt writes beyond the training prefix ("" when nothing)."""
    try:
        prompt = _apply(tokenizer, _PROBE, True, template)
        row = _apply(tokenizer, _PROBE + [{"role": "assistant", "content": _PLACEHOLDER}], False, template)
    except Exception:  # noqa: BLE001 - a template that cannot render the probe claims nothing; rows say why
        return ""
    at = row.find(_PLACEHOLDER)
    return prompt[at:] if at >= 0 and prompt.startswith(row[:at]) else ""


def _renders(tokenizer, template: str) -> list[str] | None:
    try:
        return [_apply(tokenizer, m, g, template) for m in (_CHECK, _CHECK[1:]) for g in (False, True)]
    except Exception:  # noqa: BLE001 - e.g. no system role: compared without it
        try:
            return [_apply(tokenizer, _CHECK[1:], g, template) for g in (False, True)]
        except Exception:  # noqa: BLE001
            return None


def without_prefill(tokenizer, template: str) -> tuple[str, str, bool]:
    """(the template to train, save and serve; the prefill its generation prompt writes; whether it was removed)."""
    prefill = generation_prefill(tokenizer, template)
    if not prefill:
        return template, "", False
    literal = json.dumps(prefill, ensure_ascii=False)[1:-1]  # as a Jinja string literal spells it: <think>\n
    if template.count(literal) != 1:
        return template, prefill, False
    patched = template.replace(literal, "")
    before, after = _renders(tokenizer, template), _renders(tokenizer, patched)
    if generation_prefill(tokenizer, patched) or before is None or after is None or len(before) != len(after):
        return template, prefill, False
    # Only the generation prompts may change, each by the prefill alone.
    if any(a != (b[: -len(prefill)] if i % 2 and b.endswith(prefill) else b)
           for i, (b, a) in enumerate(zip(before, after))):
        return template, prefill, False
    return _MARK % json.dumps(prefill, ensure_ascii=False) + patched, prefill, True


def removed_prefill(template: str | None) -> str:
    """The prefill lorapilot removed from this (saved) template, from its comment; "" when none."""
    m = _MARK_RE.match(template or "")
    return json.loads(m.group(1)) if m else ""


def prefill_note(prefill: str, removed: bool) -> str:
    """What the data report and the export's model card say about it."""
    if removed:
        return (f"the model's chat template prefills {prefill!r} after the assistant header when prompting, which "
                "no training row has (the answers train right after the header): lorapilot trains, saves and "
                "exports the template without that prefill, so every server prompts the model as training did "
                "(it answers without a reasoning block)")
    return (f"the model's chat template prefills {prefill!r} after the assistant header when prompting, which no "
            "training row has: servers rendering that template (vLLM, llama.cpp --jinja) prompt the model "
            "otherwise than training; lorapilot's playground, chat and samples feed what training fed")


def template_note(tokenizer) -> str | None:
    """The note for a tokenizer saved with an adapter (the export's model card): the prefill its template had
    removed, or still writes."""
    from engine.data.template import model_chat_template

    template = model_chat_template(tokenizer)
    if not template:
        return None
    removed = removed_prefill(template)
    if removed:
        return prefill_note(removed, True)
    prefill = generation_prefill(tokenizer, template)
    return prefill_note(prefill, False) if prefill else None
