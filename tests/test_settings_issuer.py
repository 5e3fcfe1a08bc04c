"""The [issuer] settings and a platform's own issuer: validated, one line per bad key."""

import pytest

from bridge.settings import SettingsError, load_settings


def test_the_default_issuer_needs_nothing_configured() -> None:
    settings = load_settings(None)
    assert settings.issuer.name == "LMS Badge Bridge" and settings.issuer.url is None
    assert settings.issuer.signed is False


def test_a_platform_may_have_its_own_issuer() -> None:
    settings = load_settings(
        None,
        issuer={"name": "Bridge", "email": "b@example.edu", "signed": True},
        platforms=[{"id": "m", "kind": "moodle", "issuer": {"name": "School", "email": "s@school.example"}}],
    )
    platform = settings.platform("m")
    assert platform is not None and platform.issuer is not None
    assert (platform.issuer.name, platform.issuer.signed, settings.issuer.signed) == ("School", False, True)


@pytest.mark.parametrize(
    "issuer,key",
    [
        ({"email": "not-an-address"}, "issuer.email"),
        ({"url": "ftp://x"}, "issuer.url"),
        ({"name": ""}, "issuer.name"),
        ({"colour": "red"}, "issuer.colour"),
    ],
)
def test_a_bad_issuer_value_names_the_key(issuer: dict[str, str], key: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(None, issuer=issuer)
    assert raised.value.lines[0].startswith(f"config: {key}")
