import tomllib
from typing import Any

import pytest

from bridge.domain.events import LMS_KINDS
from bridge.domain.templates import TemplateError, parse_template
from bridge.services.badges import shipped_templates_dir

KINDS = {"login", "purchase", *LMS_KINDS}


def template(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": "welcome",
        "name": "Welcome",
        "description": "First sign-in.",
        "image": "welcome.svg",
        "criteria": {"groups": [{"requirements": [{"kinds": ["login"], "aggregate": "count", "target": 1}]}]},
    }
    raw.update(changes)
    return raw


def requirement(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"kinds": ["login"], "aggregate": "count", "target": 1}
    raw.update(changes)
    return {"groups": [{"requirements": [raw]}]}


def test_a_valid_template_parses() -> None:
    parsed = parse_template(template(points=5, tags=["onboarding"]), "welcome.toml", KINDS)
    assert parsed.id == "welcome" and parsed.points == 5 and parsed.tags == ("onboarding",)
    assert parsed.criteria.kinds == {"login"}


@pytest.mark.parametrize(
    ("raw", "key", "reason"),
    [
        (template(colour="red"), "colour", "unknown key"),
        (template(id="Bad Id"), "id", "lowercase"),
        (template(name=""), "name", "missing"),
        (template(points=-1), "points", ">= 0"),
        (template(tags="x"), "tags", "list of strings"),
        (template(criteria=None), "criteria", "missing"),
        (template(criteria={"groups": []}), "criteria.groups", "at least one group"),
        (
            template(criteria={"groups": [{"requirements": []}]}),
            "criteria.groups[0].requirements",
            "empty group",
        ),
        (
            template(criteria={"groups": [{"requirements": [{}]}]}),
            "criteria.groups[0].requirements[0].kinds",
            "non-empty list",
        ),
        (
            template(criteria=requirement(kinds=["teleport"])),
            "criteria.groups[0].requirements[0].kinds",
            "unknown event kind 'teleport'",
        ),
        (
            template(criteria=requirement(aggregate="median")),
            "criteria.groups[0].requirements[0].aggregate",
            "'median' is not one of",
        ),
        (template(criteria=requirement(target=0)), "criteria.groups[0].requirements[0].target", ">= 1"),
        (
            template(criteria=requirement(window=7)),
            "criteria.groups[0].requirements[0].window",
            "unknown key",
        ),
        (template(criteria={"groups": [], "mode": "x"}), "criteria.mode", "unknown key"),
    ],
)
def test_a_bad_template_names_the_file_the_key_and_the_reason(
    raw: dict[str, Any], key: str, reason: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        parse_template(raw, "bad.toml", KINDS)
    assert caught.value.source == "bad.toml"
    assert caught.value.key == key
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"bad.toml: {key}: ")


def test_every_shipped_template_is_valid_and_has_its_image() -> None:
    directory = shipped_templates_dir()
    files = sorted(directory.glob("*.toml"))
    assert len(files) >= 5
    for path in files:
        parsed = parse_template(tomllib.loads(path.read_text()), path.name, KINDS)
        assert (directory / parsed.image).is_file(), path.name
        assert (directory / parsed.image).read_text().lstrip().startswith("<svg")
