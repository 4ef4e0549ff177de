"""The prompt a free-text question is fed as: the same renderer, system prompt and BOS as training.

The playground, `lorapilot chat` and `training.sample_prompts` take a question
typed by a person, not a row of the dataset. It is rendered as a row of the
dataset's own format (a completion prompt as written, an alpaca instruction, a
user turn), with the system prompt when every training row shares one, through
the template training used, and tokenized by the trainer's own Masker: its ids
are the ids a training row with that question starts with.

A follow-up question in a chat format is rendered with the conversation so far
(the system prompt, each earlier question and the answer given to it) as one
multi-turn row: its ids are the ids a training row with that conversation has
before its last answer. The other formats have no multi-turn layout (an alpaca
or completion row is one question and one answer): there a question is asked
alone (`one_question_only` says why).

What is needed to do that later (the format, the shared system prompt) is
saved beside the tokenizer in the adapter directory (PROMPT_FILE), with the
chat template training used.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from engine.errors import DataError, UserError

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


# The formats whose rows can have a system prompt.
SYSTEM_FORMATS = ("chat", "alpaca")

# An earlier exchange of a conversation: (the question as typed, the answer as the model gave it).
Turn = tuple[str, str]
MULTI_TURN_FORMATS = ("chat",)


def one_question_only(fmt: str) -> str | None:
    """Why a follow-up question cannot carry the conversation in this format, or None (it can)."""
    if fmt in MULTI_TURN_FORMATS:
        return None
    return f"{fmt} rows have no multi-turn layout: one question at a time"


def prompt_ids(tokenizer, text: str, style: PromptStyle, history: Sequence[Turn] = (),
               system: str = "") -> tuple[list[int], str]:
    """(ids, question) for a free-text prompt after `history` (a chat format only): the conversation as a request
    renders it (the training template with its generation prompt: what vLLM, llama.cpp and Ollama feed, with the BOS
    training fed), in training's tokens: the ids a training row of that conversation has before its last answer,
    wherever the template writes the question's turn alike in a row and in a request (Renderer.render_prompt).

    system: the user's own system prompt, asked with as a request with it is rendered ("": training's, as training
    rows carried it: none where the template leaves it out of every row that ends with an answer, as Mistral v0.3's
    does, so the model is asked as it was trained, and as the Ollama export serves it, with no SYSTEM line)."""
    from engine.data.masking import Masker
    from engine.data.template import Renderer

    renderer, masker = Renderer(tokenizer), Masker(tokenizer, max_seq_length=1_000_000)
    if (system or style.system) and (why := system_refused(tokenizer, style.format)):
        raise UserError(f"system prompt: {why}", fix="leave the system prompt empty, or write it into the question")
    if history and one_question_only(style.format):
        raise ValueError(f"a conversation in the {style.format} format: {one_question_only(style.format)}")
    rendered = renderer.render_prompt(text, style.format, system or style.system, history)
    if not system and rendered.system_left_out:
        rendered = renderer.render_prompt(text, style.format, "", history)
    ex = masker.build(rendered, "prompt")
    assert not isinstance(ex, str), ex  # a reason to drop a training row; a prompt at this length has none
    return list(ex.input_ids[: ex.prompt_len]), (rendered.question if not history else "") or text


def system_refused(tokenizer, fmt: str) -> str | None:
    """Why a system prompt cannot be asked with, in words, or None (it can). A template with no system role (Gemma
    2, Mistral v0.2) raises on one, and training refuses a row that has one (engine.data.template's DataError): it
    folds nothing into the first user turn, so neither may the playground or chat. Asked of the renderer training
    uses, with a question alone beside it: a template that refuses that too has some other complaint."""
    from engine.data.template import Renderer

    if fmt not in SYSTEM_FORMATS:
        return None
    renderer = Renderer(tokenizer)
    try:
        renderer.render_prompt("x", fmt, "x")
        return None
    except DataError:
        try:
            renderer.render_prompt("x", fmt)
        except DataError:
            return None
    return "this model's chat template has no place for a system prompt (training refuses a row with one)"


def template_system_prompt(tokenizer, fmt: str) -> str:
    """The system prompt the training template writes by itself into a conversation that gives none (Qwen2.5's
    "You are Qwen, created by Alibaba Cloud..."), or "". Found by rendering with and without a marked one: the
    template's own is what stands where the marked one stood."""
    from engine.data.template import training_chat_template

    if fmt not in MULTI_TURN_FORMATS:
        return ""
    template, mark = training_chat_template(tokenizer, fmt), "\x00SYSTEM\x00"
    user = [{"role": "user", "content": "\x00U\x00"}]
    try:
        given = tokenizer.apply_chat_template([{"role": "system", "content": mark}] + user, tokenize=False,
                                              add_generation_prompt=True, chat_template=template)
        none = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True,
                                             chat_template=template)
    except Exception:  # noqa: BLE001 - a template that refuses a system turn writes none of its own either
        return ""
    at = given.find(mark)
    if at < 0:
        return ""
    before, after = given[:at], given[at + len(mark):]
    if none.startswith(before) and none.endswith(after) and len(none) > len(before) + len(after):
        return none[len(before): len(none) - len(after)]
    return ""


def system_left_out(tokenizer, style: PromptStyle) -> bool:
    """Whether the chat template leaves training's system prompt out of every row that ends with an answer (Mistral
    v0.3's writes it into a last user turn only): training saw none, and a question is asked with none by default
    (prompt_ids); a typed one goes into the question's turn, as servers put it."""
    from engine.data.template import Renderer

    if not style.system or style.format not in SYSTEM_FORMATS:
        return False
    try:
        return Renderer(tokenizer).render_prompt("x", style.format, style.system).system_left_out
    except DataError:  # a template with no system role: refused by name where it is asked (system_refused)
        return False


def system_in_use(style: PromptStyle, typed: str = "", template_default: str = "", left_out: bool = False) -> str:
    """Which system prompt a question is asked with, in words (not escaped: the caller fits it to its screen).
    typed: the user's own ("" = what training used). left_out: the template leaves training's out of its rows
    (system_left_out)."""
    if style.format not in SYSTEM_FORMATS:
        return f"none ({style.format} rows have no system prompt)"
    if typed:
        return f'yours: "{typed}"' + (" (in the question's turn, where the chat template puts it; no training row "
                                      "had one there)" if left_out else "")
    if style.system and left_out:
        return (f'none, as in training: the chat template left the rows\' "{style.system}" out of every row that '
                "ends with an answer")
    if style.system:
        return f'training\'s (every row had it): "{style.system}"'
    if template_default:
        return f'none, so the template writes its own: "{template_default}"'
    return "none (training rows had different ones, or none)"


def save_for_inference(tokenizer, style: PromptStyle, out_dir: str | Path, generation_config=None) -> None:
    """The tokenizer with the chat template training used (as servers must render it: template.served_template), the
    prompt style, and the generation config stopping where training stopped (engine.data.stops.save_generation_config:
    the base model's `generation_config`, else the published stops alone), into out_dir (the adapter)."""
    from engine.data.stops import save_generation_config
    from engine.data.template import served_template, training_chat_template

    own = tokenizer.chat_template
    tokenizer.chat_template = served_template(tokenizer, training_chat_template(tokenizer, style.format))
    try:
        tokenizer.save_pretrained(str(out_dir))
    finally:  # the caller's tokenizer is left as it was: a later render must not see the default as the model's
        tokenizer.chat_template = own
    (Path(out_dir) / PROMPT_FILE).write_text(json.dumps(asdict(style), indent=1) + "\n", encoding="utf-8")
    save_generation_config(generation_config, tokenizer, out_dir)


def load_style(adapter_dir: str | Path) -> PromptStyle | None:
    """The style saved with an adapter, or None (a run from before it was saved)."""
    from engine.json_file import read_table

    saved = read_table(Path(adapter_dir) / PROMPT_FILE)
    if saved is None or "format" not in saved:
        return None
    return PromptStyle(format=str(saved["format"]), system=str(saved.get("system") or ""))
