"""Every sentence the LMS pages show lives in ``bridge/web/strings.py``, and each reads correctly in each of
its forms: the plural agrees with its count ("1 learner", "2 learners"), no word is said twice, no fraction
is over its whole. The pages use no key that is missing, and no entry is left unused."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from bridge.web.strings import STRINGS, text
from tests.grammar import grammar_problems

WEB = Path(__file__).parents[2] / "bridge" / "web"
# Keys the code builds from a value ("admin.status." + the status): each of these is used as a family.
BUILT = (
    "admin.status.",
    "admin.kind.",
    "admin.source.",
    "admin.done.",
    "instructor.done.",
    "instructor.error.",
)
SAMPLES = {
    "badge": "Quiz Ace",
    "badges": "Welcome and Quiz Ace",
    "name": "Ada Lovelace",
    "learner": "Ada Lovelace",
    "tier": "silver",
    "next": "gold",
    "course": "Open Badges 101",
    "page": "Learners",
    "date": "2 December 2026",
    "started": "2 December 2026 at 09:30 UTC",
    "query": "Ada",
    "id": "7",
    "platform": "moodle1",
    "deployment": "3",
    "actor": "administrator moodle1/2 (LTI)",
    "message": "the badge is disabled",
    "reason": "the file is empty",
    "error": "mismatched tag: line 3, column 2",
    "element": "script",
    "what": "Quiz graded",
    "version": "2",
    "size": "256",
    "rank": "2",
    "total": "12",
    "remaining": "3",
    "first": "1",
    "last": "25",
    "earned": "3",
    "percent": "50",
}


def fields(sentence: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(sentence) if name}


def forms() -> list[tuple[str, int | None]]:
    """Each entry once, and an entry with plural forms at the counts that pick each form."""
    return [
        (key, count)
        for key, entry in STRINGS.items()
        for count in ((0, 1, 2, 12) if isinstance(entry, dict) else (None,))
    ]


@pytest.mark.parametrize(("key", "count"), forms(), ids=lambda value: str(value))
def test_every_sentence_reads_correctly_in_each_form(key: str, count: int | None) -> None:
    entry = STRINGS[key]
    names = (
        set().union(*(fields(form) for form in entry.values())) if isinstance(entry, dict) else fields(entry)
    )
    values = {name: SAMPLES[name] for name in names if name != "count"}
    if count is not None and "earned" in values:  # "{earned} of {count}": never more than the whole
        values["earned"] = str(min(count, 3))
    sentence = text(key, count, **values)
    assert grammar_problems(sentence) == [], sentence


def test_a_plural_entry_has_both_forms_and_uses_its_count() -> None:
    for key, entry in STRINGS.items():
        if isinstance(entry, dict):
            assert set(entry) == {"one", "other"}, key
            assert "count" in fields(entry["other"]) or "count" in fields(entry["one"]), key


def sources() -> str:
    files = [*WEB.rglob("*.py"), *WEB.rglob("*.html"), *WEB.rglob("*.js")]
    return "\n".join(f.read_text(encoding="utf-8") for f in files if f.name != "strings.py")


def used_keys() -> set[str]:
    """The keys passed as they are written: ``t("board.heading")``, ``text("admin.not_allowed")``."""
    return set(re.findall(r"\b(?:t|text)\(\s*[\"']([a-z0-9_]+(?:\.[a-z0-9_]+)+)[\"']", sources()))


def built_families() -> tuple[str, ...]:
    """The keys built from a value: ``t("admin.status." ~ value)``, ``text(f"admin.done.{done}")``."""
    code = sources()
    built = re.findall(r"[\"']([a-z_]+(?:\.[a-z_]+)*\.)[\"']\s*~", code)
    built += re.findall(r"f[\"']([a-z_]+(?:\.[a-z_]+)*\.)\{", code)
    namespaces = {key.partition(".")[0] for key in STRINGS}
    return tuple(family for family in built if family.partition(".")[0] in namespaces)


def test_the_pages_use_no_missing_key() -> None:
    assert {key for key in used_keys() if key not in STRINGS} == set()
    for family in built_families():
        assert any(key.startswith(family) for key in STRINGS), family


def test_no_entry_is_left_unused() -> None:
    # Any quoted key counts: t("admin.badge.enabled" if badge.enabled else "admin.badge.disabled").
    used = set(re.findall(r"[\"']([a-z0-9_]+(?:\.[a-z0-9_]+)+)[\"']", sources()))
    families = built_families()
    assert {key for key in STRINGS if key not in used and not key.startswith(families)} == set()
