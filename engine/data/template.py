"""Rendering one example to text segments, each marked trained or masked.

With a chat template, alpaca and completion rows become a user turn and an
assistant turn (after a system turn when the row has one) and the model's own
template renders them. The assistant spans are found from where the renders
of the conversation's prefixes end, never by searching the rendered text for
the response (which fails when the response also appears in the prompt):

- content starts where `messages[:i]` rendered with the generation prompt
  ends; for a template that ignores `add_generation_prompt`, where a
  placeholder put in place of the content lands (so the role header stays
  masked);
- the turn ends where `messages[:i+1]` ends, less trailing whitespace (the
  newline after `<|im_end|>` is not the model's to learn).

Without a chat template the documented default is used:

    [{system}\\n\\n]### Instruction:\\n{instruction}\\n\\n[### Input:\\n{input}\\n\\n]### Response:\\n{output}{eos}

(a chat row repeats Instruction/Response per turn, "\\n\\n" between turns);
completion rows are prompt + completion + EOS and text rows text + EOS,
trained whole. The last trained span always ends in an end token: the
template's end-of-turn token or EOS, appended when the template has none.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import DataError

DEFAULT_TEMPLATE = "default (alpaca)"
# A private-use code point pair: no template escapes it and no data contains it.
_PLACEHOLDER = "\ue000lorapilot\ue001"


@dataclass
class Rendered:
    segments: list[tuple[str, bool]]        # (text, trained); their concatenation is the row's text
    prompt_text: str = ""                   # the text before the last response (what a generation is fed)
    response_text: str = ""                 # the last response as written in the data
    question: str = ""                      # what the user asked before it, as written (shown beside samples)
    skip: str | None = None                 # why the row has nothing to train, e.g. "empty response"


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    i = 0
    while a[i] == b[i]:
        i += 1
    return i


def _last_user_turn(messages: list[dict], before: int) -> str:
    return next((m["content"].strip() for m in reversed(messages[:before]) if m["role"] == "user"), "")


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


class Renderer:
    """Renders rows for one tokenizer; built once per dataset (it caches what it learns of the tokenizer)."""

    def __init__(self, tokenizer, train_on: str = "completions"):
        self.tok = tokenizer
        self.train_on = train_on
        self.has_template = bool(getattr(tokenizer, "chat_template", None))
        self.eos = tokenizer.eos_token
        not_ends = {tokenizer.bos_token, tokenizer.pad_token, tokenizer.unk_token}
        specials = set(tokenizer.all_special_tokens)
        specials |= {t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.special}
        # Longest first: "<|im_end|>" must win over a shorter special that happens to be its suffix.
        self.end_tokens = sorted((s for s in specials if s and s not in not_ends), key=len, reverse=True)
        self.notes: set[str] = set()
        self._generation_prompt: bool | None = None  # does the template render one? (asked once)

    def name(self, fmt: str) -> str:
        if fmt == "text":
            return "none (raw text + EOS)"
        if self.has_template:
            return "chat template"
        return "none (prompt + completion + EOS)" if fmt == "completion" else DEFAULT_TEMPLATE

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
            if self.has_template:
                out = self._chat(messages, source)
            elif fmt == "completion":
                out = self._completion(row)
            else:
                out = self._default(messages, row if fmt == "alpaca" else None)
        if self.train_on == "all":
            out.segments = [(t, True) for t, _ in out.segments]
        return out

    # ------------------------------------------------------------ building the turns

    def _strip_eos(self, text: str) -> str:
        # Data that writes its own EOS would otherwise end with two: the template adds one.
        if self.eos and text.rstrip().endswith(self.eos):
            self.notes.add("responses ending in the EOS text had it removed (the template adds it)")
            return text.rstrip()[: -len(self.eos)]
        return text

    def _messages(self, row: dict, fmt: str) -> list[dict]:
        if fmt == "chat":
            msgs = row["messages"]
        elif fmt == "alpaca":
            user = row["instruction"] + (f"\n\n{row['input']}" if row["input"] else "")
            msgs = ([{"role": "system", "content": row["system"]}] if row.get("system") else []) + [
                {"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
        else:
            msgs = [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["completion"]}]
        return [{"role": m["role"], "content": self._strip_eos(m["content"]) if m["role"] == "assistant"
                 else m["content"]} for m in msgs]

    def _ends_with_end_token(self, text: str) -> bool:
        return any(text.endswith(t) for t in self.end_tokens)

    def _eos_or_note(self) -> str:
        if not self.eos:
            self.notes.add("the tokenizer has no EOS token: responses end without an end token")
            return ""
        return self.eos

    # ------------------------------------------------------------ without a chat template

    def _text(self, text: str) -> Rendered:
        if not text.strip():
            return Rendered([], skip="empty text")
        text = text if self._ends_with_end_token(text) else text + self._eos_or_note()
        return Rendered([(text, True)], response_text=text)

    def _completion(self, row: dict) -> Rendered:
        completion = self._strip_eos(row["completion"])
        return Rendered([(row["prompt"], False), (completion + self._eos_or_note(), True)],
                        prompt_text=row["prompt"], response_text=completion, question=row["prompt"].strip())

    def _default(self, messages: list[dict], alpaca: dict | None) -> Rendered:
        segments: list[tuple[str, bool]] = []
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        for i, m in enumerate(messages):
            if m["role"] == "system":
                segments.append((f"{m['content']}\n\n", False))
            elif m["role"] == "user":
                if alpaca is not None:  # the alpaca layout names the input section
                    body = f"### Instruction:\n{alpaca['instruction']}\n\n"
                    body += f"### Input:\n{alpaca['input']}\n\n" if alpaca["input"] else ""
                else:
                    body = f"### Instruction:\n{m['content']}\n\n"
                segments.append((body, False))
            else:
                segments.append(("### Response:\n", False))
                segments.append((m["content"] + self._eos_or_note(), True))
                if i != last:
                    segments.append(("\n\n", False))
        segments = [(t, trained) for t, trained in segments if t]
        cut = max(i for i, (_, trained) in enumerate(segments) if trained)
        question = (f"{alpaca['instruction']}\n\n{alpaca['input']}".strip() if alpaca is not None
                    else _last_user_turn(messages, last))
        return Rendered(segments, prompt_text="".join(t for t, _ in segments[:cut]),
                        response_text=messages[last]["content"], question=question)

    # ------------------------------------------------------------ with the model's chat template

    def _apply(self, messages: list[dict], generation: bool, source: str) -> str:
        if not messages:
            return ""
        try:
            return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
        except Exception as e:  # noqa: BLE001 - jinja raises its own errors and templates raise_exception(); all are the data's
            raise DataError(f"{source}: the model's chat template cannot render this conversation: {e}",
                            fix="check the order of roles (many templates need user/assistant alternating)") from None

    def _has_generation_prompt(self, source: str) -> bool:
        if self._generation_prompt is None:
            probe = [{"role": "user", "content": "x"}]
            self._generation_prompt = self._apply(probe, True, source) != self._apply(probe, False, source)
        return self._generation_prompt

    def _content_start(self, messages: list[dict], i: int, full: str, source: str) -> int:
        prompt = self._apply(messages[:i], True, source)
        start = _common_prefix_len(prompt, full)
        if not i or not self._has_generation_prompt(source):
            # No generation prompt in this template: the role header would count as the answer's. Render a
            # placeholder as the content instead and start where it lands.
            probe = self._apply(messages[:i] + [{"role": "assistant", "content": _PLACEHOLDER}], False, source)
            at = probe.find(_PLACEHOLDER)
            if at >= start and probe[:at] == full[:at]:
                start = at
        return start

    def _chat(self, messages: list[dict], source: str) -> Rendered:
        full = self._apply(messages, False, source)
        spans: list[tuple[int, int]] = []
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            start = self._content_start(messages, i, full, source)
            end = _common_prefix_len(self._apply(messages[: i + 1], False, source), full)
            while end > start and full[end - 1].isspace():
                end -= 1
            if end > start:
                spans.append((start, end))
        if not spans:
            return Rendered([], skip="empty response")
        start, end = spans[-1]
        if not self._ends_with_end_token(full[start:end]):
            # The model must learn to stop: put the EOS right after the answer, before any masked tail.
            eos = self._eos_or_note()
            full = full[:end] + eos + full[end:]
            spans[-1] = (start, end + len(eos))
            if eos:
                self.notes.add("the chat template ends answers with no end token: EOS appended to the last one")
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        return Rendered(_spans_to_segments(full, spans), prompt_text=full[:start],
                        response_text=messages[last]["content"], question=_last_user_turn(messages, last))
