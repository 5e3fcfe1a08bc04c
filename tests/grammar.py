"""Grammar checks for sentences shown to people: shared by the tests of every place that writes them."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from itertools import pairwise

# "1 quizzes", "1 more days": a count of one before a plural noun.
_AFTER_ONE = re.compile(r"(?<![\d.,])\b1 (?:more |different |new )?([A-Za-z][\w-]*)")
_SINGULAR_IN_S = ("ss", "us", "is", "news", "series")
_FRACTION = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?) of (\d+(?:\.\d+)?)(?![\d.])")
_WORD = re.compile(r"[A-Za-z0-9']+|\|")  # "|": a title's parts
# Words a sentence may say twice in a row ("that that" is rare enough to be an error when it happens).
_MAY_REPEAT = {"ha", "no"}


def grammar_problems(sentence: str) -> list[str]:
    """What is wrong with ``sentence``: a repeated word, "1 <plural>", "N of M" with N over M."""
    problems = []
    words = [w.lower() for w in _WORD.findall(re.sub(r"\s[\u2013|]\s", " | ", sentence))]
    problems += [
        f"repeated word {a!r}" for a, b in pairwise(words) if a == b and a.isalpha() and a not in _MAY_REPEAT
    ]
    for size in range(2, 5):  # "within 7 days within 7 days" (but numbers may repeat: "127.0.0.1")
        for start in range(len(words) - 2 * size + 1):
            run = words[start : start + size]
            if run == words[start + size : start + 2 * size] and any(word.isalpha() for word in run):
                problems.append(f"repeated words {' '.join(words[start : start + size])!r}")
    for found in _AFTER_ONE.finditer(sentence):
        noun = found.group(1).lower()
        if noun.endswith("s") and not noun.endswith(_SINGULAR_IN_S):
            problems.append(f"plural after 1: {found.group(0)!r}")
    for found in _FRACTION.finditer(sentence):
        if float(found.group(1)) > float(found.group(2)):
            problems.append(f"fraction over its whole: {found.group(0)!r}")
    if re.search(r"\s[,;:!?]|\s\.(?![.a-z])|\s{2,}", sentence):  # but ", ..." and " .svg" are fine
        problems.append("space before punctuation, or two spaces")
    return problems


_NOT_PROSE = ("script", "style", "textarea", "pre", "code")  # code and documents people edit


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.pieces: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._hidden += tag in _NOT_PROSE
        self.pieces += [value for name, value in attrs if name in ("alt", "title", "aria-label") and value]

    def handle_endtag(self, tag: str) -> None:
        self._hidden -= tag in _NOT_PROSE

    def handle_data(self, data: str) -> None:
        if not self._hidden and data.strip():
            self.pieces.append(" ".join(data.split()))


def page_problems(html: str) -> list[str]:
    """The grammar problems of every piece of text a page shows (text, alt text, titles, labels)."""
    reader = _Text()
    reader.feed(html)
    return [f"{piece!r}: {problem}" for piece in reader.pieces for problem in grammar_problems(piece)]
