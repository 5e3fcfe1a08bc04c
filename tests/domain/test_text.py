"""Which text a learning event may carry (bridge.domain.text), checked where every event is made."""

from datetime import UTC, datetime

import pytest

from bridge.domain.events import LearningEvent
from bridge.domain.text import MAX_DATA_DEPTH, TextRefused, check_data, name_problem

NOW = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("42", None),
        ("Zoë Ångström 🦉", None),
        ("\x00", "contains a NUL character"),
        ("a\tb", "contains a control character (U+0009)"),
        ("\x7f", "contains a control character (U+007F)"),
        ("a\x9fb", "contains a control character (U+009F)"),
        ("\ud83d", "contains a lone surrogate (U+D83D)"),
        ("x" * 255, None),
        ("x" * 256, "is 256 characters long, at most 255 allowed"),
    ],
)
def test_names_refuse_control_characters_surrogates_and_overlong_values(
    value: str, problem: str | None
) -> None:
    assert name_problem(value) == problem


def test_an_event_names_the_field_it_refuses() -> None:
    with pytest.raises(TextRefused, match=r"^learner contains a NUL character$"):
        LearningEvent("demo", "k", "login", "\x00", NOW)
    with pytest.raises(TextRefused, match=r"^platform is 65 characters long, at most 64 allowed$"):
        LearningEvent("p" * 65, "k", "login", "42", NOW)
    with pytest.raises(TextRefused, match=r"^item contains a control character"):
        LearningEvent("demo", "k", "login", "42", NOW, course="c", item="i\n")
    long_but_fine = LearningEvent("demo", "k" * 255, "login", "l" * 255, NOW, course="c" * 255)
    assert len(long_but_fine.event_key) == 255


def test_data_may_hold_line_breaks_but_no_nul_or_surrogate_at_any_depth() -> None:
    check_data({"comment": "one\ntwo\tthree", "nested": {"list": [1, "ok", None]}})
    with pytest.raises(TextRefused, match=r"^data.nested.list\[1\] contains a NUL character$"):
        check_data({"nested": {"list": [1, "\x00"]}})
    with pytest.raises(TextRefused, match=r"^data key '\\ud800' contains a lone surrogate"):
        LearningEvent("demo", "k", "login", "42", NOW, data={"\ud800": 1})


def test_data_nested_deeper_than_the_limit_is_refused() -> None:
    deep: dict[str, object] = {}
    inner = deep
    for _ in range(MAX_DATA_DEPTH):
        inner["a"] = {}
        inner = inner["a"]  # type: ignore[assignment]
    with pytest.raises(TextRefused, match="nests deeper than 32 levels"):
        check_data(deep)
