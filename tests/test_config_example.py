"""config.example.toml documents every option, with the defaults the code really has."""

import re
import tomllib

from bridge.settings import Settings, load_settings
from tests.conftest import REPO

EXAMPLE = REPO / "config.example.toml"


def test_the_example_loads_and_its_values_are_the_defaults() -> None:
    example = load_settings(EXAMPLE)
    assert example.model_dump() == Settings().model_dump()


def test_every_option_is_in_the_example() -> None:
    text = EXAMPLE.read_text()
    documented = set(tomllib.loads(text))
    commented = {m.group(1) for m in re.finditer(r"^# ([a-z_]+) = ", text, re.MULTILINE)}
    assert set(Settings.model_fields) <= documented | commented | {"platforms"}
    assert "[[platforms]]" in text
    # Options with no default value to write (a file path) are documented as commented-out examples.
    for section in ("server", "worker", "health", "lti"):
        nested = Settings.model_fields[section].annotation.model_fields  # type: ignore[union-attr]
        assert set(nested) <= set(tomllib.loads(text)[section]) | commented, section
