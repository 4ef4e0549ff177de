"""The prompt a free-text question is fed as: the same renderer, system prompt and BOS as training.

The playground, `lorapilot chat` and `training.sample_prompts` take a question
typed by a person, not a row of the dataset. It is rendered as a row of the
dataset's own format (a completion prompt as written, an alpaca instruction, a
user turn), with the system prompt when every training row shares one, through
the template training used, and tokenized by the trainer's own Masker: its ids
are the ids a training row with that question starts with.

What is needed to do that later (the format, the shared system prompt) is
saved beside the tokenizer in the adapter directory (PROMPT_FILE), with the
chat template training used.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

PROMPT_FILE = "lorapilot_prompt.json"


@dataclass
class PromptStyle:
    format: str = "alpaca"   # the training data's format
    system: str = ""         # the system prompt every training row shares ("" when they differ or have none)


def shared_system_prompt(rows: list[dict], fmt: str) -> str:
    """The system prompt when every row has the same one, else ""."""
    def system_of(row: dict) -> str:
        if fmt == "alpaca":
            return row.get("system") or ""
        if fmt == "chat":
            first = row["messages"][0] if row["messages"] else {}
            return first.get("content", "") if first.get("role") == "system" else ""
        return ""

    found = {system_of(row) for row in rows}
    return found.pop() if len(found) == 1 else ""


def prompt_ids(tokenizer, text: str, style: PromptStyle) -> tuple[list[int], str]:
    """(ids, question) for a free-text prompt: the ids a training row with this question starts with."""
    from engine.data.masking import Masker
    from engine.data.template import Renderer

    rendered = Renderer(tokenizer).render_prompt(text, style.format, style.system)
    ex = Masker(tokenizer, max_seq_length=1_000_000).build(rendered, "prompt")
    assert not isinstance(ex, str), ex  # a reason to drop a training row; a prompt at this length has none
    return list(ex.input_ids[: ex.prompt_len]), rendered.question or text


def save_for_inference(tokenizer, style: PromptStyle, out_dir: str | Path) -> None:
    """The tokenizer with the chat template training used (as servers must render it: template.served_template), and
    the prompt style, into out_dir (the adapter)."""
    from engine.data.template import served_template, training_chat_template

    own = tokenizer.chat_template
    tokenizer.chat_template = served_template(tokenizer, training_chat_template(tokenizer, style.format))
    try:
        tokenizer.save_pretrained(str(out_dir))
    finally:  # the caller's tokenizer is left as it was: a later render must not see the default as the model's
        tokenizer.chat_template = own
    (Path(out_dir) / PROMPT_FILE).write_text(json.dumps(asdict(style), indent=1) + "\n", encoding="utf-8")


def load_style(adapter_dir: str | Path) -> PromptStyle | None:
    """The style saved with an adapter, or None (a run from before it was saved)."""
    path = Path(adapter_dir) / PROMPT_FILE
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        return PromptStyle(format=str(saved["format"]), system=str(saved.get("system") or ""))
    except (ValueError, KeyError, TypeError):
        return None
