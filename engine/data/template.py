"""Rendering one example to text segments, each marked trained or masked.

Every row but a text row is a conversation rendered by one chat template:
the model's own, else one of the two defaults below. `training_chat_template`
names the template a run trains with; the trainer saves it with the adapter
(and so with every export), so `apply_chat_template` later renders what
training rendered.

- ALPACA_TEMPLATE (alpaca and chat rows on a tokenizer without a template):

      [{system}\\n\\n]### Instruction:\\n{instruction}\\n\\n[### Input:\\n{input}\\n\\n]### Response:\\n{output}{eos}

  a chat row repeats Instruction/Response per turn, "\\n\\n" between turns.
- RAW_TEMPLATE (completion and text rows on a tokenizer without a template):
  the prompt as written, then the completion and EOS.

Text rows are text + EOS, trained whole, with no template (their special-token text is the tokens: a text row
is often a conversation already rendered). In every other row, a special token's text written in a message is
text (`Rendered.literal`): the Masker tokenizes it as its characters.

The assistant spans are found from renders of the conversation, never by
searching the rendered text for the response (which fails when the response
also appears in the prompt):

- content starts where `messages[:i]` rendered with the generation prompt
  ends; for a template that ignores `add_generation_prompt`, for an answer
  after a turn that is not the user's (Granite 3.1 writes no generation prompt
  after a system message alone), or where the prompt render is no prefix of
  the full one (a system message written only into a last user turn), where
  a placeholder put in place of the content lands (so
  the role header, and the user's words, stay masked): in the conversation up
  to the answer, else in the whole conversation (DeepSeek writes a later
  system message after the BOS, before the first question); a row where
  neither agrees with its render is refused by name;
- the turn ends where its content ends in the full render, found by
  rendering the whole conversation with a placeholder as answer i's content
  (what follows the placeholder is the full render's tail), then the
  template's end of a final turn: up to its first end token, less trailing
  whitespace (the newline after `<|im_end|>` is not the model's to learn).
  A template may render a turn differently when others follow it (Qwen3
  writes an empty think block only after the last user turn): the render of
  `messages[:i+1]` then is no prefix of the full one. Only where the
  placeholder cannot be trusted does the turn end where `messages[:i+1]`
  ends, as far as it agrees with the full render.

What ends an answer: the last trained span always ends in one end token, the
template's end-of-turn token or EOS, appended when the template writes none.
An end token is any special token but BOS and UNK, unless it is also the
EOS: GPT-2-style tokenizers (Phi-2, GPT-NeoX) have one `<|endoftext|>` for
BOS, EOS and UNK, which must not hide the EOS. The pad token counts as any
other: it is often the EOS itself (engine.model.load_tokenizer sets pad = EOS
when the tokenizer has none), or the end-of-turn token (a fine-tuning script's
`<|eot_id|>` beside the EOS `<|end_of_text|>`), and padding is masked by position.

A system prompt the template leaves out: some templates (Mistral-7B-Instruct-v0.3,
Mistral-Nemo, Mistral-Small-Instruct-2409; not Mistral Small 3's, which writes it
first, as `[SYSTEM_PROMPT]`) write the system message into a user turn only when
that turn is the conversation's last message. A training row ends with an answer,
so its system prompt is in no turn; a prompt at inference ends with the user turn,
so a runtime that renders the template shows it there. A row whose system message
(non-empty) does not occur in its render up to the end of its last trained answer
is marked `system_left_out` (a string search in the render already made, no extra
render; a row that ends with a user turn has it there, after every answer) and
counted in the DataReport; the pre-flight names the rows.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Sequence

from engine.errors import DataError

DEFAULT_TEMPLATE = "default (alpaca)"
# A private-use code point pair: no template escapes it and no data contains it.
_PLACEHOLDER = "\ue000lorapilot\ue001"
# A special token's text written in a message (a reply that mentions `<|im_end|>`) is marked while the row is rendered:
# OPEN, its first character, SPLIT, the rest, CLOSE. Broken in two, it matches no search for an end token; the marks
# are taken out of the segments, and the characters are kept as Rendered.literal, which the Masker tokenizes as text.
_LIT_OPEN, _LIT_SPLIT, _LIT_CLOSE = "\ue002", "\ue003", "\ue004"
_LITERAL_NOTE = "special-token text written in the data"
_LIT_MARKED = re.compile(f"{_LIT_OPEN}(.){_LIT_SPLIT}(.*?){_LIT_CLOSE}", re.S)
# engine.data.formats marks an answer not to train with "weight": 0 (the data's weight 0; an answer in a TRL prompt)
_WEIGHT_0_NOTE = ("assistant turns the data marks not to train (weight 0, or in a prompt-completion row's prompt) "
                  "are context, not trained")

# `message.input` is set only by alpaca rows (the Input section); a plain chat message renders without it.
ALPACA_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
    "{%- elif message['role'] == 'user' %}"
    "{%- if message.input is defined and message.input %}"
    "{{ '### Instruction:\\n' + message.instruction + '\\n\\n### Input:\\n' + message.input + '\\n\\n' }}"
    "{%- else %}{{ '### Instruction:\\n' + message['content'] + '\\n\\n' }}{%- endif %}"
    "{%- else %}{{ '### Response:\\n' + message['content'] + (eos_token or '') }}"
    "{%- if not loop.last %}{{ '\\n\\n' }}{%- endif %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '### Response:\\n' }}{%- endif %}"
)
# What a base model trained on completion or text rows was fed: the words alone.
RAW_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}{{ message['content'] + (eos_token or '') }}"
    "{%- else %}{{ message['content'] }}{%- endif %}"
    "{%- endfor %}"
)


def model_chat_template(tokenizer) -> str | None:
    """The tokenizer's own chat template (the default one of several), or None."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default")
    return template or None


def training_chat_template(tokenizer, fmt: str) -> str:
    """The chat template a run on this tokenizer and data format trains with.

    The model's own when it has one (its clock pinned to a fixed day,
    engine/data/template_date.py, less a generation-prompt prefill no
    training row has, DeepSeek-R1's `<think>\\n`: engine/data/prefill.py); else
    ALPACA_TEMPLATE for alpaca and chat data, RAW_TEMPLATE for completion and
    text data (a base model is fed the prompt as written). This is the template
    saved with the adapter and any export; exporters for other runtimes
    (Ollama, vLLM, llama.cpp) read it here.
    """
    return training_template(tokenizer, fmt)[0]


def training_template(tokenizer, fmt: str) -> tuple[str, list[str]]:
    """(training_chat_template, what the data report says of it: a pinned date, a prefill)."""
    from engine.data.prefill import prefill_note, without_prefill
    from engine.data.template_date import pin_date

    own = model_chat_template(tokenizer)
    if not own:
        return (RAW_TEMPLATE if fmt in ("completion", "text") else ALPACA_TEMPLATE), []
    # the date first: the prefill's comment must stay the template's first line (engine.data.prefill)
    dated, date_note = pin_date(own)
    template, prefill, removed = without_prefill(tokenizer, dated)
    return template, [n for n in (date_note, prefill_note(prefill, removed) if prefill else None) if n]


# lorapilot's own comment lines at a template's top (a pinned date, a removed prefill): they stay first.
_OWN_COMMENTS = re.compile(r"(?:\{#- lorapilot:[^\n]*-#\}\n)*")
_BOS_NOTE = ("{#- lorapilot: the BOS the tokenizer put before every training row, written here: servers that render "
             "this template add none -#}\n")
_WRITE_BOS = "{{- bos_token }}"


def _after_own_comments(template: str, text: str) -> str:
    own = _OWN_COMMENTS.match(template)
    top = own.end() if own else 0
    return template[:top] + text + template[top:]


def with_bos(tokenizer, template: str) -> str:
    """The template to save with the adapter: the training template, writing the BOS training fed when the tokenizer
    adds it and the template does not (the defaults above, a community template without `bos_token`).

    Training rows get that BOS from the tokenizer (engine.data.masking); a server that renders the saved template
    tokenizes its text without adding special tokens (vLLM's chat completions, transformers'
    `apply_chat_template(tokenize=True)`), so without it the model is served a prompt with no BOS. A template
    that writes it costs nothing where the tokenizer adds one too: lorapilot keeps one BOS, llama.cpp --jinja drops
    the template's before adding its own."""
    from engine.data.masking import tokenizer_adds_bos

    bos = tokenizer.bos_token
    if not bos or not tokenizer_adds_bos(tokenizer):
        return template
    try:  # the Renderer's question (_QUESTION), rendered here once per save: no Renderer at save or export time
        probe = tokenizer.apply_chat_template(list(_QUESTION), tokenize=False, add_generation_prompt=True,
                                              chat_template=template)
    except Exception:  # noqa: BLE001 - a template that cannot render one user turn is saved as training used it
        return template
    if probe.startswith(bos):
        return template
    return _after_own_comments(template, _BOS_NOTE + _WRITE_BOS)


_DATE_STRING = re.compile(r"\bdate_string\b")
_DATE_STRING_NOTE = ("{#- lorapilot: date_string is the day training wrote, whatever a server passes (llama.cpp passes "
                     "today's to every Llama 3.x template) -#}\n")


def served_template(tokenizer, template: str) -> str:
    """The training template as saved with the adapter and every export, for servers that render it themselves:
    writing the BOS training fed (with_bos), and keeping the day training wrote where the template reads a
    `date_string` a server may pass (llama.cpp --jinja passes today's to every Llama 3.x template; Llama 3.1's
    default and 3.2's pinned clock write 26 Jul 2024, engine/data/template_date.py). Both only where lorapilot's
    own renders, which pass no date, come out the same: what training rendered is unchanged."""
    template = with_bos(tokenizer, template)
    if not _DATE_STRING.search(template) or _DATE_STRING_NOTE in template:
        return template
    from engine.data.template_date import FIXED_DAY

    day = json.dumps(FIXED_DAY.strftime("%d %b %Y"))
    pinned = _after_own_comments(template, _DATE_STRING_NOTE + f"{{%- set date_string = {day} %}}")
    probes = [[{"role": "user", "content": "x"}],
              [{"role": "system", "content": "s"}, {"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]]

    def render(messages, generation, chat_template):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation,
                                             chat_template=chat_template)

    try:
        same = all(render(m, g, template) == render(m, g, pinned) for m in probes for g in (False, True))
    except Exception:  # noqa: BLE001 - e.g. no system role: the day is not ours to fix there
        return template
    return pinned if same else template


def is_raw_template(template: str | None) -> bool:
    """Whether a (saved) template is RAW_TEMPLATE, the BOS written in front or not: the adapter of a base model
    trained on completion rows carries it, and its rows were a prompt and an answer, never a conversation."""
    if not template:
        return False
    own = _OWN_COMMENTS.match(template)
    body = template[own.end() if own else 0:]
    return body.removeprefix(_WRITE_BOS) == RAW_TEMPLATE


def template_name(tokenizer, fmt: str) -> str:
    """How the data is rendered, in the words the reports use."""
    if fmt == "text":
        return "none (raw text + EOS)"
    if model_chat_template(tokenizer):
        return "chat template"
    return "none (prompt + completion + EOS)" if fmt == "completion" else DEFAULT_TEMPLATE


def special_tokens(tokenizer) -> set[str]:
    """The tokenizer's special tokens (its named ones and the added tokens marked special)."""
    specials = set(tokenizer.all_special_tokens)
    specials |= {t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.special}
    return {s for s in specials if s}


def end_tokens(tokenizer) -> list[str]:
    """The special tokens that can end an answer, longest first (see the module's docstring)."""
    # The EOS is an end token whatever else it is: in GPT-2's, GPT-NeoX's and Phi-2's tokenizers the BOS and UNK too
    # (one <|endoftext|>). The pad is no exception either way (padding is masked by position): it may be the EOS
    # (load_tokenizer's fallback) or the end-of-turn token (`<|eot_id|>` as pad beside the EOS `<|end_of_text|>`),
    # and a pad of its own is in no template's render.
    not_ends = {tokenizer.bos_token, tokenizer.unk_token} - {tokenizer.eos_token}
    specials = special_tokens(tokenizer)
    # Longest first: "<|im_end|>" must win over a shorter special that happens to be its suffix.
    return sorted((s for s in specials if s and s not in not_ends), key=len, reverse=True)


_QUESTION = ({"role": "user", "content": "x"},)   # the probe's one user message


@dataclass
class _QuestionProbe:
    """A chat template's render of one user message: the probe its generation prompt is read from."""
    prompt: str   # with the generation prompt
    asked: str    # without
    # (its generation prompt, what it writes between that and a final answer's content): Renderer._final_answer_parts
    final_answer: tuple[str, str] | None = None


@dataclass
class Rendered:
    segments: list[tuple[str, bool]]        # (text, trained); their concatenation is the row's text
    # The prompt: the text before the first answer, i.e. segments[:prompt_segments]. It is what the
    # playground, chat and samples feed (tokenized alone, as they tokenize it), so it is also kept when
    # train_on is "all".
    prompt_segments: int = 0
    prompt_text: str = ""
    response_text: str = ""                 # the first answer as written in the data (what follows the prompt)
    question: str = ""                      # the user's words just before it, as written (shown beside samples)
    skip: str | None = None                 # why the row has nothing to train, e.g. "empty response"
    system_left_out: bool = False           # its system message is nowhere in the row the template rendered
    empty_turns: int = 0                    # assistant turns with no text: masked as context, not trained
    empty_questions: int = 0                # user turns with no text before a trained answer (chat rows)
    # (start, end) in the segments' text of special-token text written in the data: tokenized as text, not the token
    literal: list[tuple[int, int]] = field(default_factory=list)


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    i = 0
    while a[i] == b[i]:
        i += 1
    return i


def _words(text: str) -> str:
    """The text without its whitespace: what a template that only reformats an answer keeps of it."""
    return "".join(text.split())


def _last_user_turn(messages: list[dict], before: int) -> str:
    return next((m["content"].strip() for m in reversed(messages[:before]) if m["role"] == "user"), "")


def _space_before_answer(prompt: str, start: int, full: str, at: int, question: str) -> int | None:
    """Where the answer starts when the row writes only whitespace between the end of the prompt a server feeds and
    the answer's content (at): Llama-2's and Mistral v0.3's `[/INST]` + ` ` + answer. That whitespace is the
    answer's (one pass over the row joins it to the first word, `▁Yellow`); left at the end of the prompt, it
    trained a lone `▁` that no prompt fed ends with, then the answer tokenized as if nothing preceded it (`▁▁Yellow`).
    None: no such whitespace. start: where the prompt (rendered with the generation prompt) and the row part. Where
    they part before the prompt's end (Mistral v0.3 writes the system message into a last user turn only: the prompt
    has it, the row not), the prompt must end as the row does before the whitespace: with the question and what
    follows it (`[/INST]`)."""
    if start == len(prompt):
        return start if start < at and full[start:at].isspace() else None
    before = len(full[:at].rstrip())
    if before == at or prompt != prompt.rstrip() or not question or question not in prompt:
        return None
    after_question = prompt[prompt.rindex(question) + len(question):]
    return before if full[:before].endswith(question + after_question) else None


def _space_after(generation: str, full: str, at: int) -> int | None:
    """Where an answer that opens the conversation starts when the row writes only whitespace between the template's
    generation prompt and its content (at): DeepSeek-V2's `Assistant:` + ` ` + answer, the space the answer's as after
    a question (_space_before_answer). None: no such whitespace, or no generation prompt before it."""
    before = len(full[:at].rstrip())
    own = generation[len(generation.rstrip()):]   # whitespace the generation prompt ends with is the prompt's
    seam = before + len(own)
    if not generation.strip() or seam >= at or full[before:seam] != own or \
            not full[:before].endswith(generation.rstrip()):
        return None
    return seam


def _unmark(segments: list[tuple[str, bool]]) -> tuple[list[tuple[str, bool]], list[tuple[int, int]]]:
    """The segments without the literal marks, and where the marked characters are in their text."""
    out, literal, at = [], [], 0
    for text, trained in segments:
        plain, pos = [], 0
        for m in _LIT_MARKED.finditer(text):
            plain.append(text[pos:m.start()])
            start = at + sum(map(len, plain))
            plain.append(m.group(1) + m.group(2))
            literal.append((start, start + len(plain[-1])))
            pos = m.end()
        plain.append(text[pos:])
        out.append(("".join(plain), trained))
        at += len(out[-1][0])
    return out, literal


def _spans_to_segments(text: str, spans: list[tuple[int, int]]) -> list[tuple[str, bool]]:
    segments, pos = [], 0
    for start, end in spans:
        if start > pos:
            segments.append((text[pos:start], False))
        if end > start:
            segments.append((text[start:end], True))
        pos = max(pos, end)
    if pos < len(text):
        segments.append((text[pos:], False))
    return segments


def prompt_row(fmt: str, text: str, system: str = "", history: Sequence[tuple[str, str]] = ()) -> dict:
    """A row of the dataset's format whose prompt is `text` (a free-text question at chat time), after `history`
    (earlier (question, answer) turns: a chat row only).

    Its answer is a placeholder, only there so the template renders the turn: its tokens are never fed.
    """
    if fmt in ("completion", "text"):
        return {"prompt": text, "completion": "x"}
    if fmt == "chat":
        turns = [{"role": role, "content": content} for q, a in history
                 for role, content in (("user", q), ("assistant", a))]
        return {"messages": ([{"role": "system", "content": system}] if system else []) + turns
                + [{"role": "user", "content": text}, {"role": "assistant", "content": "x"}]}
    return {"instruction": text, "input": "", "output": "x", **({"system": system} if system else {})}


class Renderer:
    """Renders rows for one tokenizer; built once per dataset (it caches what it learns of the tokenizer)."""

    def __init__(self, tokenizer, train_on: str = "completions"):
        self.tok = tokenizer
        self.train_on = train_on
        self.eos = tokenizer.eos_token
        self.end_tokens = end_tokens(tokenizer)
        specials = sorted(special_tokens(tokenizer), key=len, reverse=True)
        self._special_text = re.compile("|".join(map(re.escape, specials))) if specials else None
        self.notes: set[str] = set()
        self._questions: dict[str, _QuestionProbe] = {}  # one user message rendered, by template (once each)
        self._own_end: dict[str, tuple[str, ...]] = {}  # _own_ends by format
        self._templates: dict[str, str] = {}  # training_chat_template by format (a few renders each: once)
        self._stops: tuple[str, ...] | None = None  # _row_ends

    def name(self, fmt: str) -> str:
        return template_name(self.tok, fmt)

    # ------------------------------------------------------------ entry point

    def render(self, row: dict, fmt: str, source: str = "") -> Rendered:
        if fmt == "text":
            out = self._text(row["text"])
        else:
            messages = self._messages(row, fmt)
            answers = [m for m in messages if m["role"] == "assistant"]
            if not answers:
                return Rendered([], skip="no assistant turn")
            if not any(m["content"].strip() for m in answers):
                return Rendered([], skip="empty response")
            if self.train_on != "all" and all(m.get("weight") == 0 for m in answers if m["content"].strip()):
                return Rendered([], skip="every answer has weight 0")
            out = self._chat(messages, self._template(fmt), source)
            if fmt == "chat" and not out.skip:
                out.empty_questions = self._empty_questions(messages)
        if self.train_on == "all":
            out.segments = [(t, True) for t, _ in out.segments]
            out.empty_turns = 0
        return out

    def _empty_questions(self, messages: list[dict]) -> int:
        """The user turns with no text before the last trained answer: each answer after one is trained as the reply
        to an empty question (a question lost from the data, most often). A completion row's empty prompt is not one
        (unconditioned text), nor a question no trained answer follows."""
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant" and m["content"].strip()
                    and (m.get("weight") != 0 or self.train_on == "all")), default=0)
        return sum(m["role"] == "user" and not m["content"].strip() for m in messages[:last])

    def _template(self, fmt: str) -> str:
        if fmt not in self._templates:
            self._templates[fmt], notes = training_template(self.tok, fmt)
            self.notes.update(notes)
        return self._templates[fmt]

    def render_prompt(self, text: str, fmt: str, system: str = "", history: Sequence[tuple[str, str]] = ()) -> Rendered:
        """A free-text prompt, after `history` (a chat format only), as a request renders it: the training template's
        render of the conversation with its generation prompt (what vLLM, llama.cpp and Ollama feed), segmented as
        training segments a row of that conversation (see prompt_row): its prompt segments are the ids fed.

        The row's text before its last answer is that render wherever the template writes the asked turn as it writes
        it in a row. Where it writes it otherwise, from the turn on the request's render is fed: a template that puts
        the system message into the last user turn only (Mistral v0.3, Nemo, Small 2409) leaves it out of every row that
        ends with an answer, and writes it into the turn a request ends with. Where the request's render is only
        shorter (a template that writes no generation prompt, whose answer turn opens with the role header), the row's
        is fed: the header training put before every answer.

        A model trained on text rows never saw a template: it is fed the words as written. (A renderer of train_on
        completions: its trained segments are the answers.)
        """
        row = prompt_row(fmt, text, system, history)
        if fmt == "text":  # its special-token text is the tokens, as in the text rows it was trained on
            return self._chat(self._messages(row, "completion"), RAW_TEMPLATE, "prompt", mark_literal=False)
        out = self.render(row, fmt, "prompt")
        # the placeholder answer: the last trained segment (train_on completions trains every answer)
        last = max(i for i, (_, trained) in enumerate(out.segments) if trained)
        out = replace(out, prompt_segments=last, prompt_text="".join(t for t, _ in out.segments[:last]))
        return self._as_asked(out, self._messages(row, fmt)[:-1], fmt)

    def _as_asked(self, row: Rendered, asked: list[dict], fmt: str) -> Rendered:
        """`row` (a prompt row, its prompt segments those before the last answer) with the request's render of the
        conversation `asked` where the two part (see render_prompt)."""
        request, literal = _unmark([(self._apply(self._mark_literal(asked), True, self._template(fmt), "prompt"),
                                     False)])
        written, prompt = request[0][0], row.prompt_text
        common = _common_prefix_len(written, prompt)
        if common in (len(written), len(prompt)):
            return row
        # the segments wholly before the parting point are the row's (its earlier answers segmented as training
        # segments them); from the segment it falls in on, the request's text, one masked segment
        kept, at = 0, 0
        while kept < row.prompt_segments and at + len(row.segments[kept][0]) <= common:
            at += len(row.segments[kept][0])
            kept += 1
        answer = row.segments[row.prompt_segments]
        return replace(row, segments=[*row.segments[:kept], (written[at:], False), answer], prompt_segments=kept + 1,
                       prompt_text=written, literal=literal)

    # ------------------------------------------------------------ building the turns

    def _own_ends(self, fmt: str) -> tuple[str, ...]:
        """The end tokens an answer written in the data may end with, meaning them: the EOS, and the token the
        template ends an answer with (Gemma's `<end_of_turn>`, Phi-3's `<|end|>`)."""
        if fmt not in self._own_end:
            probe = [{"role": "user", "content": "x"}, {"role": "assistant", "content": _PLACEHOLDER}]
            try:
                turn_end = self._turn_end_text(probe, 1, self._template(fmt), "the end of an answer")
            except DataError:  # a template that refuses this conversation refuses the rows too, naming them
                turn_end = ""
            self._own_end[fmt] = tuple(t for t in dict.fromkeys([turn_end.strip(), self.eos or ""])
                                       if t in self.end_tokens)
        return self._own_end[fmt]

    def _strip_end(self, text: str, fmt: str) -> str:
        # Data that writes its own end token would otherwise end with two, or with the token's characters and the
        # token (a written special token is text, see _mark_literal): the template adds it.
        ends = self._own_ends(fmt)
        end = next((t for t in ends if text.rstrip().endswith(t)), None)
        if end is None:
            return text
        self.notes.add("responses ending in their end token (" + " or ".join(ends) + ") had it removed (the "
                       "template adds it)")
        return text.rstrip()[: -len(end)]

    def _messages(self, row: dict, fmt: str) -> list[dict]:
        if fmt == "chat":
            msgs = row["messages"]
        elif fmt == "alpaca":
            user = row["instruction"] + (f"\n\n{row['input']}" if row["input"] else "")
            msgs = ([{"role": "system", "content": row["system"]}] if row.get("system") else []) + [
                {"role": "user", "content": user, "instruction": row["instruction"], "input": row["input"]},
                {"role": "assistant", "content": row["output"]}]
        else:
            msgs = [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["completion"]}]
        return [{**m, "content": self._strip_end(m["content"], fmt)} if m["role"] == "assistant" else m for m in msgs]

    def _mark_literal(self, messages: list[dict]) -> list[dict]:
        """The messages with each special token's text in their text (content; an alpaca row's instruction and input,
        which the default template writes) marked as text (see _LIT_MARKED): a reply that mentions `<|im_end|>` is
        not the end of its turn. A BOS written at the very start of the conversation is left as it is: the data's
        own BOS (see _without_data_bos)."""
        if self._special_text is None:
            return messages
        bos = self.tok.bos_token or ""
        out = []
        for n, m in enumerate(messages):
            marked = dict(m)
            for key in ("content", "instruction", "input"):
                text = m.get(key)
                if not isinstance(text, str):
                    continue
                keep = bos if n == 0 and bos and text.startswith(bos) else ""
                found = self._special_text.search(text, len(keep))
                if found is None:
                    continue
                marked[key] = keep + self._special_text.sub(
                    lambda t: f"{_LIT_OPEN}{t[0][0]}{_LIT_SPLIT}{t[0][1:]}{_LIT_CLOSE}", text[len(keep):])
                if not any(note.startswith(_LITERAL_NOTE) for note in self.notes):
                    self.notes.add(f"{_LITERAL_NOTE} (such as {found[0]}) is trained as the characters written, not "
                                   "as that token (an answer that mentions an end token does not end there)")
            out.append(marked)
        return out

    def _without_data_bos(self, messages: list[dict], full: str, template: str, source: str) -> tuple[list[dict], str]:
        """(messages, full render) without a BOS the data writes at the start of its first message where the template
        renders anything before that message: there it would be a second BOS, after the template's first header
        (`[INST] <s>What`). The row's BOS is the template's or the tokenizer's. Where the message starts the row
        (the prompt as written, on a base model), it is the row's BOS, kept once (Masker)."""
        bos = self.tok.bos_token
        first = messages[0] if messages else {}
        if not bos or not first.get("content", "").startswith(bos) or full.startswith(first["content"]):
            return messages, full
        self.notes.add(f"a {bos} written at the start of a row was left out (the row has its one BOS first)")
        dropped = {k: v[len(bos):] if k in ("content", "instruction") and isinstance(v, str) and v.startswith(bos)
                   else v for k, v in first.items()}
        messages = [dropped, *messages[1:]]
        return messages, self._apply(messages, False, template, source)

    def _row_ends(self) -> tuple[str, ...]:
        """The tokens a text row may end with, no EOS after it: what generation stops on (engine.data.stops)."""
        if self._stops is None:
            from engine.data.stops import stop_tokens

            self._stops = tuple(stop_tokens(self.tok))
        return self._stops

    def _ends_with_end_token(self, text: str) -> bool:
        return any(text.endswith(t) for t in self.end_tokens)

    def _eos_or_note(self) -> str:
        if not self.eos:
            self.notes.add("no end token: the tokenizer names no EOS token (nor does the model's config), so "
                           "answers are trained without one and the model will not learn to stop; set "
                           "eos_token in the model's tokenizer_config.json")
            return ""
        return self.eos

    # ------------------------------------------------------------ text rows

    def _text(self, text: str) -> Rendered:
        if not text.strip():
            return Rendered([], skip="empty text")
        # a conversation rendered already ends in its end token and the template's newline after it, a document in
        # its separator (`<|endoftext|>`): it ends there, where it ends in a token generation stops on
        # (engine/data/stops.py); in any other special token (a reserved one, a role header) it gets the EOS after it
        text = text if text.rstrip().endswith(self._row_ends()) else text + self._eos_or_note()
        return Rendered([(text, True)], response_text=text)

    # ------------------------------------------------------------ through a chat template

    def _apply(self, messages: list[dict], generation: bool, template: str, source: str) -> str:
        if not messages:
            return ""
        try:
            return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation,
                                                chat_template=template)
        except Exception as e:  # noqa: BLE001 - jinja raises its own errors and templates raise_exception(); all are the data's
            raise DataError(f"{source}: the model's chat template cannot render this conversation: {e}",
                            fix=self._render_fix(messages, generation, template)) from None

    def _render_fix(self, messages: list[dict], generation: bool, template: str) -> str:
        """What to change in a conversation the template refuses: its system prompt, where the template renders it
        without one (Gemma 2, Mistral v0.2 have no system role); else the order of the roles."""
        rest = [m for m in messages if m["role"] != "system"]
        if rest != messages:
            try:
                self.tok.apply_chat_template(rest, tokenize=False, add_generation_prompt=generation,
                                             chat_template=template)
                return ("this model's chat template has no system role: put the system prompt into the first user "
                        "message, or leave it out")
            except Exception:  # noqa: BLE001, S110 - refused without it too: the roles' order is the likelier cause
                pass
        return "check the order of roles (many templates need user/assistant alternating)"

    def _question(self, template: str, source: str) -> _QuestionProbe:
        """The template's render of one user message, with and without the generation prompt: rendered once."""
        probe = self._questions.get(template)
        if probe is None:
            question = list(_QUESTION)
            probe = self._questions[template] = _QuestionProbe(self._apply(question, True, template, source),
                                                               self._apply(question, False, template, source))
        return probe

    def _has_generation_prompt(self, template: str, source: str) -> bool:
        probe = self._question(template, source)
        return probe.prompt != probe.asked

    def _final_answer_parts(self, template: str, source: str) -> tuple[str, str]:
        """(the generation prompt, what the template writes between it and the content of a final answer): DeepSeek-V2's
        `Assistant:` and ""; Qwen3's `<|im_start|>assistant\n` and its empty think block `<think>\n\n</think>\n\n`,
        which the model writes itself after the prompt inference feeds. ("", "") where there is no generation prompt
        or the final answer renders otherwise than after it."""
        probe = self._question(template, source)
        if probe.final_answer is None:
            prompt, asked = probe.prompt, probe.asked
            final = self._apply([*_QUESTION, {"role": "assistant", "content": _PLACEHOLDER}], False, template, source)
            at = final.find(_PLACEHOLDER)
            ok = prompt != asked and prompt.startswith(asked) and at >= len(prompt) and final.startswith(prompt)
            probe.final_answer = (prompt[len(asked):], final[len(prompt):at]) if ok else ("", "")
        return probe.final_answer

    def _content_start(self, messages: list[dict], i: int, full: str, template: str, source: str) -> int:
        prompt = self._apply(messages[:i], True, template, source)
        start = _common_prefix_len(prompt, full)
        if not i or start < len(prompt) or messages[i - 1]["role"] != "user" \
                or not self._has_generation_prompt(template, source):
            # No generation prompt in this template, or none after this turn (Granite 3.1's writes it after a turn of
            # its loop, which a system message alone is not: an answer that opens the conversation): the role header
            # would count as the answer's; or the prompt renders otherwise than the row (a system message written
            # only into a last user turn): the answer would start inside the user's words. Render a placeholder as
            # the content instead and start where it lands.
            probe = self._apply(messages[:i] + [{"role": "assistant", "content": _PLACEHOLDER}], False, template,
                                source)
            at = probe.find(_PLACEHOLDER)
            if at >= start and probe[:at] == full[:at]:
                # Only whitespace between the prompt and the content (Llama-2's `[/INST]` + ` ` + answer): the answer's
                generation, preamble = self._final_answer_parts(template, source)
                # An answer that opens the conversation: the prompt a server feeds it is the generation prompt alone
                spaced = _space_before_answer(prompt, start, full, at, _last_user_turn(messages, i)) if i else \
                    _space_after(generation, full, at)
                # A final answer's preamble (Qwen3's empty think block, after a second answer in a row) is the
                # answer's, as after a question
                pre = preamble if spaced is None else ""
                if pre.strip() and at - len(pre) >= start and full[at - len(pre):at] == pre:
                    start = at - len(pre)
                else:
                    start = at if spaced is None else spaced
            elif start < len(prompt):
                # What follows the answer changes what precedes it (DeepSeek writes every system message, a later
                # one too, after the BOS): the renders part before the answer, and their common prefix would train
                # the rest of the prompt. The placeholder in the whole conversation lands where the content is.
                start = self._placeholder_start(messages, i, full, template, source)
        return start

    def _placeholder_start(self, messages: list[dict], i: int, full: str, template: str, source: str) -> int:
        """Where answer i's content starts in the full render, from the whole conversation rendered with a
        placeholder as that content; a DataError naming the row where even that render disagrees with the row's."""
        probe = self._apply(messages[:i] + [{**messages[i], "content": _PLACEHOLDER}] + messages[i + 1:], False,
                            template, source)
        at = probe.find(_PLACEHOLDER)
        if at < 0 or probe[:at] != full[:at]:
            raise DataError(f"{source}: the model's chat template renders this conversation so that answer "
                            f"{sum(m['role'] == 'assistant' for m in messages[:i + 1])} cannot be told apart from "
                            "its prompt", fix="check the order of roles (a system message first, then user and "
                                              "assistant alternating)")
        return at

    def _turn_end_text(self, messages: list[dict], i: int, template: str, source: str, probe: str | None = None) -> str:
        """What the template writes after answer i's content when it is the last turn: its end-of-turn token(s),
        up to the first end token, trailing whitespace excluded (the newline after `<|im_end|>` is not the
        model's to learn, nor a second end token some templates add at the very end). probe: that render, when
        the caller has it (answer i is the conversation's last turn)."""
        if probe is None:
            probe = self._apply(messages[:i] + [{**messages[i], "content": _PLACEHOLDER}], False, template, source)
        at = probe.find(_PLACEHOLDER)
        after = probe[at + len(_PLACEHOLDER):] if at >= 0 else ""
        ends = [after.find(t) + len(t) for t in self.end_tokens if t in after]
        return after[: min(ends)] if ends else after.rstrip()

    def _content_end(self, messages: list[dict], i: int, start: int, full: str, template: str,
                     source: str) -> int | None:
        """Where answer i ends in the full render (its end token included), found by rendering the whole
        conversation with a placeholder as its content: what follows the placeholder is the full render's tail.
        None when that cannot be trusted (the template renders other turns differently around a placeholder)."""
        probe = self._apply(messages[:i] + [{**messages[i], "content": _PLACEHOLDER}] + messages[i + 1:], False,
                            template, source)
        at = probe.find(_PLACEHOLDER)
        if at < 0 or probe[:start] != full[:start]:
            return None
        after = probe[at + len(_PLACEHOLDER):]
        end = len(full) - len(after)
        # the last turn's probe is already the render of a final turn (most rows: one answer, no second render)
        tail = self._turn_end_text(messages, i, template, source, probe if i == len(messages) - 1 else None)
        if end < start or not full.endswith(after) or not full[end:].startswith(tail):
            return None
        return end + len(tail)

    def _prefix_end(self, messages: list[dict], i: int, full: str, template: str, source: str) -> int:
        """Where the render of the conversation up to answer i ends, as far as it agrees with the full render:
        right for templates that render a turn the same whatever follows it."""
        return _common_prefix_len(self._apply(messages[: i + 1], False, template, source), full)

    def _chat(self, written: list[dict], template: str, source: str, mark_literal: bool = True) -> Rendered:
        messages = self._mark_literal(written) if mark_literal else written
        messages, full = self._without_data_bos(messages, self._apply(messages, False, template, source), template,
                                                source)
        spans: list[tuple[int, int]] = []
        turns: list[int] = []
        empty = 0
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            if m.get("weight") == 0 and self.train_on != "all":
                # the data's own "not this one" (axolotl's convention, engine.data.formats): context, as the turns
                # around it. train_on: all trains every token, as it says.
                self.notes.add(_WEIGHT_0_NOTE)
                continue
            if not m["content"].strip():
                # trained, an empty answer is its end token alone after the role header: the model would learn to
                # answer nothing. Context, as the turns around it.
                empty += 1
                continue
            start = self._content_start(messages, i, full, template, source)
            end = self._content_end(messages, i, start, full, template, source)
            if end is None:
                end = self._prefix_end(messages, i, full, template, source)
            while end > start and full[end - 1].isspace():
                end -= 1
            if end > start:
                spans.append((start, end))
                turns.append(i)
                if _words(m["content"]) not in _words(full[start:end]):
                    # DeepSeek-R1-Distill's template drops what precedes `</think>` (the reasoning) from every
                    # answer: trained as rendered, as inference renders it, but never silently. Compared without
                    # whitespace: Qwen3's rewrites the last answer's `<think>R</think>A` as `<think>\nR\n</think>\n\nA`,
                    # which drops nothing
                    self.notes.add("the chat template drops part of some answers (e.g. reasoning before </think>): "
                                   "they are trained as the template renders them, without it")
        if not spans:
            return Rendered([], skip="empty response")
        # The model must learn to stop: where an answer ends in no end token, put the EOS right after it, before any
        # masked tail. The last answer only with train_on completions: that is where a generated answer ends
        # (generation stops on the EOS, never rendered back). An earlier answer is history, which the template (and a
        # server rendering the saved one) writes with no EOS; the header after it is masked, so nothing is trained to
        # run on either (tests/test_data_masking.py: ..._leaves_earlier_answers_as_a_server_renders_them). With
        # train_on all that header is trained: after every answer but the last the model would learn to write the
        # user's next turn (`User:`), which no stop token ends, and run on; every answer gets the EOS there (a
        # server's history then lacks those EOS: one token of an earlier turn, where the alternative is a model that
        # does not stop).
        last = len(spans) - 1
        for k in (range(last, -1, -1) if self.train_on == "all" else (last,)):
            start, end = spans[k]
            if self._ends_with_end_token(full[start:end]):
                continue
            eos = self._eos_or_note()
            full = full[:end] + eos + full[end:]
            spans[k] = (start, end + len(eos))
            spans[k + 1:] = [(a + len(eos), b + len(eos)) for a, b in spans[k + 1:]]
            if eos:
                self.notes.add("the chat template ends answers with no end token: EOS appended to "
                               + ("every one (train_on: all)" if self.train_on == "all" else "the last one"))
        first = turns[0]
        segments, literal = _unmark(_spans_to_segments(full, spans))
        # left out of what the trained answers read: nowhere before the last one's end (a row that ends with a user
        # turn has it there, through Mistral v0.3's template, after every answer: trained without it all the same)
        read = full[:spans[-1][1]]
        left_out = any(m["role"] == "system" and m["content"].strip() and m["content"].strip() not in read
                       for m in messages)
        prompt_text = segments[0][0] if spans[0][0] else ""
        return Rendered(segments, prompt_segments=1 if spans[0][0] else 0, prompt_text=prompt_text,
                        response_text=written[first]["content"], question=_last_user_turn(written, first),
                        system_left_out=left_out, literal=literal, empty_turns=empty)
