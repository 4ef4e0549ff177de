"""From rendered segments to input_ids and labels, with the guarantees the trainer relies on.

The row's whole text is tokenized once, with offsets and without the
tokenizer's own special tokens; a token is trained when its characters
overlap a trained segment (so a token that merges the space before an answer
with its first word is trained: it is the answer's first word). Tokenizing
the segments one by one instead would change the tokens at every boundary.

Guarantees, asserted token by token in tests/test_data_masking.py:

- one BOS per row: the template's, or the tokenizer's when it would add one
  and the text lacks it, never two;
- labels are input_ids where trained, -100 elsewhere, not shifted; position 0
  is always -100 (nothing predicts it, and packed rows rely on it);
- a row longer than max_seq_length is, in this order of preference:
  1. kept whole-response by cutting the start of the prompt (BOS kept), if
     the prompt keeps at least a quarter of the window (or all of itself);
  2. cut at the end, if that keeps some of the response (the response loses
     tokens: counted in DataReport.n_truncated);
  3. dropped and counted (reason "too long"): a fragment of an answer to a
     fragment of a question teaches nothing good.
"""

from __future__ import annotations

from engine.data.template import Rendered
from engine.data.types import IGNORE_INDEX, TokenizedExample

PROMPT_FLOOR = 0.25  # the least share of the window a shortened prompt keeps


def tokenizer_adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts a BOS in front when asked for its special tokens."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    without = tokenizer("a", add_special_tokens=False)["input_ids"]
    return len(with_special) > len(without) and with_special[0] == bos


def _trained_spans(segments: list[tuple[str, bool]]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    pos = 0
    for text, trained in segments:
        if trained and text:
            if spans and spans[-1][1] == pos:
                spans[-1] = (spans[-1][0], pos + len(text))
            else:
                spans.append((pos, pos + len(text)))
        pos += len(text)
    return spans


def _is_trained(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    if end == start:  # a zero-width token (some tokenizers' added prefix space) belongs where it sits
        return any(a <= start < b for a, b in spans)
    return any(start < b and end > a for a, b in spans)


class Masker:
    def __init__(self, tokenizer, max_seq_length: int):
        self.tok = tokenizer
        self.max = max_seq_length
        self.bos_id = tokenizer.bos_token_id
        self.adds_bos = tokenizer_adds_bos(tokenizer)

    # ------------------------------------------------------------ tokens and labels

    def _encode(self, rows: list[list[tuple[str, bool]]]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        texts = ["".join(t for t, _ in segments) for segments in rows]
        try:
            enc = self.tok(texts, add_special_tokens=False, return_offsets_mapping=True)
        except NotImplementedError:  # a Python tokenizer has no offsets: fall back to segment by segment
            return [self._encode_by_segment(segments) for segments in rows]
        return [(list(ids), [tuple(o) for o in offs]) for ids, offs in zip(enc["input_ids"], enc["offset_mapping"])]

    def _encode_by_segment(self, segments: list[tuple[str, bool]]) -> tuple[list[int], list[tuple[int, int]]]:
        """Less exact at the boundaries (tokens cannot merge across them), but right about which is which."""
        ids, offsets, pos = [], [], 0
        for text, _ in segments:
            part = self.tok(text, add_special_tokens=False)["input_ids"]
            ids += part
            offsets += [(pos, pos + len(text))] * len(part)
            pos += len(text)
        return ids, offsets

    def _label(self, segments: list[tuple[str, bool]], ids: list[int], offsets) -> tuple[list[int], list[int]]:
        spans = _trained_spans(segments)
        labels = [t if _is_trained(s, e, spans) else IGNORE_INDEX for t, (s, e) in zip(ids, offsets)]
        if self.bos_id is not None:
            # A template that renders BOS while the data also starts with its text gives two: keep one.
            while len(ids) > 1 and ids[0] == ids[1] == self.bos_id:
                ids, labels = ids[1:], labels[1:]
            if self.adds_bos and (not ids or ids[0] != self.bos_id):
                ids, labels = [self.bos_id] + ids, [IGNORE_INDEX] + labels
        if labels:
            labels[0] = IGNORE_INDEX
        return ids, labels

    # ------------------------------------------------------------ truncation

    def _truncate(self, ids: list[int], labels: list[int]) -> tuple[list[int], list[int], bool] | None:
        """(ids, labels, prompt_shortened) within max_seq_length, or None when the row must be dropped."""
        n, window = len(ids), self.max
        if n <= window:
            return ids, labels, False
        nb = 1 if self.bos_id is not None and ids[0] == self.bos_id else 0
        first = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
        prompt_len, response_len = first - nb, n - first
        room = window - nb - response_len            # prompt tokens the whole response leaves
        if room >= min(prompt_len, int(window * PROMPT_FLOOR)):
            cut = prompt_len - room                  # > 0: the row is too long
            return ids[:nb] + ids[nb + cut:], labels[:nb] + labels[nb + cut:], True
        if first < window:
            return ids[:window], labels[:window], False
        return None

    # ------------------------------------------------------------ the example

    def build_many(self, rendered: list[Rendered], sources: list[str]) -> list[TokenizedExample | str]:
        """One TokenizedExample per rendered row, or the reason it was dropped."""
        todo = [i for i, r in enumerate(rendered) if not r.skip]
        out: list[TokenizedExample | str] = [r.skip or "" for r in rendered]
        # Batches: the fast tokenizer encodes a list in parallel, in Rust.
        for at in range(0, len(todo), 512):
            chunk = todo[at: at + 512]
            for i, (ids, offsets) in zip(chunk, self._encode([rendered[i].segments for i in chunk])):
                out[i] = self._example(rendered[i], ids, offsets, sources[i])
        return out

    def build(self, rendered: Rendered, source: str) -> TokenizedExample | str:
        return self.build_many([rendered], [source])[0]

    def _example(self, rendered: Rendered, ids, offsets, source: str) -> TokenizedExample | str:
        ids, labels = self._label(rendered.segments, ids, offsets)
        trained_full = sum(label != IGNORE_INDEX for label in labels)
        if not trained_full:
            return "no trained tokens"
        full_length = len(ids)
        kept = self._truncate(ids, labels)
        if kept is None:
            return "too long"
        ids, labels, shortened = kept
        return TokenizedExample(
            input_ids=ids, labels=labels, source=source, full_length=full_length,
            trained_tokens=sum(label != IGNORE_INDEX for label in labels), trained_tokens_full=trained_full,
            truncated=len(ids) < full_length, prompt_shortened=shortened,
            prompt_text=rendered.prompt_text, response_text=rendered.response_text, question=rendered.question)
