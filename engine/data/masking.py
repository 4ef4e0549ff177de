"""From rendered segments to input_ids and labels, with the guarantees the trainer relies on.

Each segment is tokenized on its own, without the tokenizer's special
tokens, and the pieces are concatenated: the prompt is tokenized alone,
exactly as the playground, chat and samples tokenize it, and the answer's
tokens follow it, so the prompt/answer seam is always a token boundary. (One
pass over the whole text would let a token straddle the seam: a prompt
character merged into the answer's first token, or with a SentencePiece-style
tokenizer a whole prompt merged into the answer, trained; and the ids a model
is trained to produce after the prompt would not be those it must produce at
inference.) Segments start and end at the template's special tokens almost
everywhere, where tokens split anyway.

Guarantees, asserted token by token in tests/test_data_masking.py and
tests/test_template_families.py:

- one BOS per row: the template's, or the tokenizer's when it would add one
  and the text lacks it, never two;
- labels are input_ids where trained, -100 elsewhere, not shifted; position 0
  is always -100 (nothing predicts it, and packed rows rely on it);
- special-token text written in a message (a reply that mentions `<|im_end|>`) is tokenized as the characters it
  is, never as the token: the only special tokens in a row are those the template (or tokenizer) puts there;
- prompt_len: the ids before the first answer, the same ids inference is fed;
- a row longer than max_seq_length is, in this order of preference:
  0. cut in what follows its last trained token (masked: the newline after the end token), if that is enough;
  1. kept whole-response by cutting the start of the prompt (BOS kept), if
     the prompt keeps at least a quarter of the window (or all of itself);
  2. cut at the end, if that keeps some of the response (the response loses
     tokens: counted in DataReport.n_truncated);
  3. dropped and counted (reason "too long"): a fragment of an answer to a
     fragment of a question teaches nothing good.
"""

from __future__ import annotations

from engine.data.template import Rendered, special_tokens
from engine.data.types import IGNORE_INDEX, TokenizedExample, TooLong

PROMPT_FLOOR = 0.25  # the least share of the window a shortened prompt keeps


def tokenizer_adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts a BOS in front when asked for its special tokens."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    without = tokenizer("a", add_special_tokens=False)["input_ids"]
    return len(with_special) > len(without) and with_special[0] == bos


def prefix_space_id(tokenizer) -> int | None:
    """The id of the bare `▁` a SentencePiece-style tokenizer puts in front of text tokenized alone, else None."""
    first = tokenizer.convert_ids_to_tokens(tokenizer("a", add_special_tokens=False)["input_ids"][:1])
    if not first or not first[0].startswith("\u2581"):
        return None
    return tokenizer.get_vocab().get("\u2581")


def rstrip_tokens(tokenizer) -> tuple[str, ...]:
    """The added tokens that take in the whitespace after them (`rstrip`: Phi-3's `<|end|>`, `<|user|>`, ...)."""
    return tuple(t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.rstrip)


class Masker:
    def __init__(self, tokenizer, max_seq_length: int):
        self.tok = tokenizer
        self.max = max_seq_length
        self.bos_id = tokenizer.bos_token_id
        self.adds_bos = tokenizer_adds_bos(tokenizer)
        self.prefix_space = prefix_space_id(tokenizer)
        self.rstrip = rstrip_tokens(tokenizer)
        self.special_ids = {tokenizer.convert_tokens_to_ids(t) for t in special_tokens(tokenizer)}

    # ------------------------------------------------------------ tokens and labels

    def _encode(self, rows: list[Rendered]) -> list[list[list[int]]]:
        """The ids of each row's segments, each segment tokenized alone (one batched call).

        A SentencePiece-style tokenizer puts a `▁` (a space) in front of any text tokenized alone: the answer
        then starts with its word-start token, as the model generates it after the prompt. A later segment's
        own leading space is that `▁` (" 42." is "▁42.", not "▁" "▁42."), and a `▁` left as a token of its
        own before text that starts with no space ("▁" "\n\n") is not in the text: it is dropped.

        A token that takes in the whitespace after it (`rstrip`: Phi-3's `<|end|>`) does so across a seam too: the
        next segment's leading whitespace is dropped, as one pass over the text drops it (`<|end|>` `<|user|>`, not
        `<|end|>` `\n` `<|user|>`, which the model never sees at inference).
        """
        texts = []
        starts = []  # where each text tokenized starts in its row's text (for Rendered.literal)
        for r in rows:
            at = 0
            for i, (text, _) in enumerate(r.segments):
                written = text
                # (the template's own whitespace after the token, `<|assistant|>\n`, was taken in already)
                if i and self.rstrip and r.segments[i - 1][0].rstrip().endswith(self.rstrip):
                    text = text.lstrip()
                texts.append(text[1:] if i and self.prefix_space is not None and text.startswith(" ") else text)
                starts.append(at + len(written) - len(texts[-1]))
                at += len(written)
        flat = iter(zip(self.tok(texts, add_special_tokens=False)["input_ids"] if texts else [], texts, starts))
        out = []
        for r in rows:
            pieces = []
            for ids, text, start in (next(flat) for _ in r.segments):
                literal = [(a - start, b - start) for a, b in r.literal if a - start < len(text) and b > start]
                pieces.append(self._as_text(text, list(ids), literal) if literal else list(ids))
            for i in range(1, len(pieces)):
                if self.prefix_space is not None and pieces[i][:1] == [self.prefix_space] and len(pieces[i]) > 1:
                    pieces[i] = pieces[i][1:]
            out.append(pieces)
        return out

    def _as_text(self, text: str, ids: list[int], literal: list[tuple[int, int]]) -> list[int]:
        """The ids of `text` with the special tokens at the `literal` character ranges tokenized as the text they are.

        The tokenizer splits text at special tokens before anything else; between two of them that are the
        template's, the text is tokenized again with special tokens split, so the written `<|im_end|>` becomes the
        tokens of its characters, merged with its neighbours as any other text is."""
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
        if enc["input_ids"] != ids:  # cannot happen: the same call; never wrong ids if it did
            return ids
        offsets = enc["offset_mapping"]

        def written(k: int) -> bool:
            a, b = offsets[k]
            return any(a < lb and b > la for la, lb in literal)

        anchors = [k for k, tid in enumerate(ids) if tid in self.special_ids and not written(k)]
        out: list[int] = []
        for left, right in zip([-1, *anchors], [*anchors, len(ids)]):
            if any(ids[k] in self.special_ids and written(k) for k in range(left + 1, right)):
                a = offsets[left][1] if left >= 0 else 0
                b = offsets[right][0] if right < len(ids) else len(text)
                out += self.tok(text[a:b], add_special_tokens=False, split_special_tokens=True)["input_ids"]
            else:
                out += ids[left + 1:right]
            if right < len(ids):
                out.append(ids[right])
        return out

    def _label(self, rendered: Rendered, pieces: list[list[int]]) -> tuple[list[int], list[int], int]:
        """(ids, labels, prompt_len)."""
        ids, labels = [], []
        for (_, trained), part in zip(rendered.segments, pieces):
            ids += part
            labels += part if trained else [IGNORE_INDEX] * len(part)
        prompt_len = sum(len(part) for part in pieces[: rendered.prompt_segments])
        if self.bos_id is not None:
            # A template that renders BOS while the data also starts with its text gives two: keep one.
            while len(ids) > 1 and ids[0] == ids[1] == self.bos_id:
                ids, labels, prompt_len = ids[1:], labels[1:], max(0, prompt_len - 1)
            if self.adds_bos and (not ids or ids[0] != self.bos_id):
                ids, labels, prompt_len = [self.bos_id] + ids, [IGNORE_INDEX] + labels, prompt_len + 1
        if labels:
            labels[0] = IGNORE_INDEX
        return ids, labels, prompt_len

    # ------------------------------------------------------------ truncation

    def _truncate(self, ids: list[int], labels: list[int]) -> tuple[list[int], list[int], int] | None:
        """(ids, labels, prompt tokens cut) within max_seq_length, or None when the row must be dropped."""
        n, window = len(ids), self.max
        if n <= window:
            return ids, labels, 0
        # What follows the last trained token (the newline after `<|im_end|>`, an EOS after the end-of-turn token)
        # is masked and teaches nothing: it goes first, before any token of the prompt or the answers.
        last = max(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
        ids, labels, n = ids[:max(window, last + 1)], labels[:max(window, last + 1)], max(window, last + 1)
        if n <= window:
            return ids, labels, 0
        nb = 1 if self.bos_id is not None and ids[0] == self.bos_id else 0
        first = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
        prompt_len, response_len = first - nb, n - first
        room = window - nb - response_len            # prompt tokens the whole response leaves
        if room >= min(prompt_len, int(window * PROMPT_FLOOR)):
            cut = prompt_len - room                  # > 0: the row is too long
            return ids[:nb] + ids[nb + cut:], labels[:nb] + labels[nb + cut:], cut
        if first < window:
            return ids[:window], labels[:window], 0
        return None

    # ------------------------------------------------------------ the example

    def build_many(self, rendered: list[Rendered], sources: list[str]) -> list[TokenizedExample | str]:
        """One TokenizedExample per rendered row, or the reason it was dropped."""
        todo = [i for i, r in enumerate(rendered) if not r.skip]
        out: list[TokenizedExample | str] = [r.skip or "" for r in rendered]
        # Batches: the fast tokenizer encodes a list in parallel, in Rust.
        for at in range(0, len(todo), 512):
            chunk = todo[at: at + 512]
            for i, pieces in zip(chunk, self._encode([rendered[i] for i in chunk])):
                out[i] = self._example(rendered[i], pieces, sources[i])
        return out

    def build(self, rendered: Rendered, source: str) -> TokenizedExample | str:
        return self.build_many([rendered], [source])[0]

    def _example(self, rendered: Rendered, pieces: list[list[int]], source: str) -> TokenizedExample | str:
        ids, labels, prompt_len = self._label(rendered, pieces)
        trained_full = sum(label != IGNORE_INDEX for label in labels)
        if not trained_full:
            return "no trained tokens"
        full_length = len(ids)
        kept = self._truncate(ids, labels)
        if kept is None:
            return TooLong(full_length)
        ids, labels, cut = kept
        return TokenizedExample(
            input_ids=ids, labels=labels, source=source, full_length=full_length,
            trained_tokens=sum(label != IGNORE_INDEX for label in labels), trained_tokens_full=trained_full,
            truncated=len(ids) < full_length, prompt_shortened=cut > 0,
            prompt_len=min(len(ids), max(0, prompt_len - cut)),
            prompt_text=rendered.prompt_text, response_text=rendered.response_text, question=rendered.question,
            system_left_out=rendered.system_left_out)
