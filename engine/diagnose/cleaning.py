"""Dataset hygiene shared by the data doctor and `prepare`: slop phrases and duplicates."""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from engine.settings import PRESETS_DIR

SLOP_PHRASES_FILE = PRESETS_DIR / "slop_phrases.txt"

T = TypeVar("T")


def normalise_whitespace(text: str) -> str:
    """The comparison form for duplicates: every whitespace run is one space, no edges."""
    return " ".join(text.split())


def _comparable(text: str) -> str:
    # Curly apostrophes are how generated text usually writes "I'm".
    return normalise_whitespace(text.replace("\u2019", "'")).casefold()


@lru_cache(maxsize=8)
def load_slop_phrases(path: str | Path = SLOP_PHRASES_FILE) -> tuple[str, ...]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return tuple(_comparable(line) for line in lines if line.strip() and not line.lstrip().startswith("#"))


class SlopMatcher:
    """Finds slop phrases in a text: case-insensitive, whole words, any whitespace between words."""

    def __init__(self, phrases: Iterable[str] | None = None):
        self.phrases = tuple(_comparable(p) for p in (load_slop_phrases() if phrases is None else phrases))
        # Longest first, so "as an ai language model" wins over a shorter phrase it contains.
        ordered = sorted(set(self.phrases), key=len, reverse=True)
        pattern = "|".join(r"\s+".join(re.escape(w) for w in p.split()) for p in ordered)
        self._regex = re.compile(rf"(?<!\w)(?:{pattern})(?!\w)") if ordered else None

    def find(self, text: str) -> list[str]:
        """The distinct phrases in the text, in order of first appearance."""
        if self._regex is None or not text:
            return []
        found = (normalise_whitespace(m.group(0)) for m in self._regex.finditer(_comparable(text)))
        return list(dict.fromkeys(found))


def count_slop(texts: Iterable[str], matcher: SlopMatcher | None = None) -> tuple[int, Counter]:
    """How many texts hold any slop phrase, and per phrase in how many texts it appears."""
    matcher = matcher or SlopMatcher()
    per_phrase: Counter = Counter()
    with_slop = 0
    for text in texts:
        found = matcher.find(text)
        if found:
            with_slop += 1
            per_phrase.update(found)
    return with_slop, per_phrase


def filter_slop(items: Iterable[T], text_of: Callable[[T], str] = str,
                matcher: SlopMatcher | None = None) -> tuple[list[T], list[tuple[T, list[str]]]]:
    """Opt-in filter: (kept items, dropped items with the phrases that condemned them)."""
    matcher = matcher or SlopMatcher()
    kept, dropped = [], []
    for item in items:
        found = matcher.find(text_of(item))
        if found:
            dropped.append((item, found))
        else:
            kept.append(item)
    return kept, dropped


def duplicate_groups(texts: Iterable[str]) -> list[list[int]]:
    """Indices of texts equal after whitespace normalisation, only groups of two or more, first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        groups.setdefault(normalise_whitespace(text), []).append(i)
    return [g for g in groups.values() if len(g) > 1]
