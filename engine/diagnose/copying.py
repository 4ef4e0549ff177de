"""Does a generated sample reproduce a training response word for word?

Measured as word n-gram overlap against each training response. N-grams that
many responses share (a fixed greeting, a sign-off, a JSON skeleton) are the
dataset's template, not memorised content, and are left out of the count so
that a well-trained model that has learned the format does not fire.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

# Eight words in a row: long enough that two independent texts almost never
# share one by chance, short enough to catch a response copied with small edits.
COPY_NGRAM = 8
# Share of the sample's own (non-template) n-grams found in a single training
# response. At half or more the sample is that response, lightly varied.
COPY_MIN_OVERLAP = 0.5
# At least this many shared n-grams (about a dozen words in a row), so that a
# short output is not called a copy for one common phrase.
COPY_MIN_SHARED = 5
# An n-gram in this share of the training responses (and in at least
# TEMPLATE_MIN_DOCS of them) is template text.
TEMPLATE_DOC_FRACTION = 0.1
TEMPLATE_MIN_DOCS = 3

_WORD = re.compile(r"\w+|[^\w\s]")


def _ngrams(text: str) -> list[tuple[str, ...]]:
    words = _WORD.findall(text.casefold())
    return [tuple(words[i:i + COPY_NGRAM]) for i in range(len(words) - COPY_NGRAM + 1)]


class CopyDetector:
    """An index of the training responses, built once and checked per sample."""

    def __init__(self, training_responses: list[str]):
        self.responses = list(training_responses)
        self._where: dict[tuple[str, ...], set[int]] = defaultdict(set)
        for i, response in enumerate(self.responses):
            for gram in _ngrams(response):
                self._where[gram].add(i)
        template_docs = max(TEMPLATE_MIN_DOCS, TEMPLATE_DOC_FRACTION * len(self.responses))
        self.template = {g for g, docs in self._where.items() if len(docs) >= template_docs}

    def check(self, sample_output: str) -> str | None:
        """Evidence that the sample copies one training response, or None."""
        all_grams = _ngrams(sample_output)
        grams = [g for g in all_grams if g not in self.template]
        if len(grams) < COPY_MIN_SHARED:
            return None
        hits = Counter(i for g in set(grams) for i in self._where.get(g, ()))
        if not hits:
            return None
        index, shared = hits.most_common(1)[0]
        overlap = shared / len(set(grams))
        if shared < COPY_MIN_SHARED or overlap < COPY_MIN_OVERLAP:
            return None
        run_words, run_text = self._longest_shared_run(all_grams, index)
        return (f"{overlap:.0%} of the sample's {COPY_NGRAM}-word runs appear in training response #{index + 1}; "
                f"longest shared run {run_words} words: \"{run_text}\"")

    def _longest_shared_run(self, grams: list[tuple[str, ...]], index: int) -> tuple[int, str]:
        """Over all the sample's n-grams in order, template included: the words really shared in a row."""
        best_start, best_len, start = 0, 0, None
        for i, gram in enumerate(grams + [None]):
            inside = gram is not None and index in self._where.get(gram, ())
            if inside and start is None:
                start = i
            elif not inside and start is not None:
                if i - start > best_len:
                    best_start, best_len = start, i - start
                start = None
        words = list(grams[best_start]) + [g[-1] for g in grams[best_start + 1:best_start + best_len]]
        text = " ".join(words)
        return len(words), text if len(text) <= 120 else text[:117] + "..."


def copies_training_data(sample_output: str, training_responses: list[str]) -> str | None:
    """Evidence (a sentence) when the sample reproduces a training response nearly verbatim, else None."""
    return CopyDetector(training_responses).check(sample_output)
