"""badge-bridge lti register|list|approve|disable|keys|rotate-key|invite, run in-process."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner, Result

from bridge.cli import main
from bridge.db.engine import Database
from bridge.lti.store import LaunchStore
from bridge.lti.tool import LtiTool
from bridge.services.audit import audit_log
from tests.conftest import make_settings, write_config

MOODLE_ARGS = (
    "--issuer",
    "https://moodle.example.edu",
    "--client-id",
    "kM4vZ9pQ2xR7tLw",
    "--login-url",
    "https://moodle.example.edu/mod/lti/auth.php",
    "--token-url",
    "https://moodle.example.edu/mod/lti/token.php",
    "--jwks-url",
    "https://moodle.example.edu/mod/lti/certs.php",
)


@pytest.fixture
def config(database: Database, database_url: str, tmp_path: Path) -> Path:
    return write_config(tmp_path / "c.toml", database_url, tmp_path)


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args])


def register_moodle(config: Path, *extra: str) -> str:
    """Registers moodle1 and answers the registration's id."""
    result = run(config, "lti", "register", "moodle1", *MOODLE_ARGS, *extra)
    assert result.exit_code == 0, result.output
    return result.stdout.split("\t", 1)[0]


def test_register_prints_the_active_registration_and_its_deployment(config: Path) -> None:
    result = run(config, "lti", "register", "moodle1", *MOODLE_ARGS, "--deployment", "3")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "1\tactive\tmoodle1\thttps://moodle.example.edu\tclient kM4vZ9pQ2xR7tLw\tmanual",
        "\tdeployment 3\tactive",
    ]


def test_register_records_who_acted(config: Path, database: Database) -> None:
    register_moodle(config, "--as", "ms.admin")
    [entry] = audit_log(database)
    assert (entry.actor, entry.action) == ("ms.admin", "lti.register")


def test_list_shows_every_registration_with_its_deployments(config: Path, database: Database) -> None:
    assert run(config, "lti", "list").stdout == ""
    first = register_moodle(config, "--deployment", "3")
    second = register_moodle(config, "--client-id", "second")  # the last --client-id wins
    LaunchStore(database).add_pending_deployment(int(second), "new-install")
    assert run(config, "lti", "list").stdout.splitlines() == [
        f"{first}\tactive\tmoodle1\thttps://moodle.example.edu\tclient kM4vZ9pQ2xR7tLw\tmanual",
        "\tdeployment 3\tactive",
        f"{second}\tactive\tmoodle1\thttps://moodle.example.edu\tclient second\tmanual",
        "\tdeployment new-install\tpending",
    ]


def test_disable_and_approve_a_registration_or_one_deployment(config: Path, database: Database) -> None:
    registration_id = register_moodle(config, "--deployment", "3")
    disabled = run(config, "lti", "disable", registration_id, "--as", "mr.ops")
    assert disabled.exit_code == 0 and disabled.stdout.splitlines()[0].split("\t")[1] == "disabled"
    approved = run(config, "lti", "approve", registration_id)
    assert approved.exit_code == 0 and approved.stdout.splitlines()[0].split("\t")[1] == "active"
    one = run(config, "lti", "disable", registration_id, "--deployment", "3")
    assert one.stdout.splitlines() == [
        f"{registration_id}\tactive\tmoodle1\thttps://moodle.example.edu\tclient kM4vZ9pQ2xR7tLw\tmanual",
        "\tdeployment 3\tdisabled",
    ]
    assert [(e.actor, e.action) for e in audit_log(database)][:3] == [
        ("cli", "lti.disable"),
        ("cli", "lti.approve"),
        ("mr.ops", "lti.disable"),
    ]


def test_approve_approves_a_pending_deployment_first_seen_in_a_launch(
    config: Path, database: Database
) -> None:
    registration_id = register_moodle(config)
    LaunchStore(database).add_pending_deployment(int(registration_id), "new-install")
    result = run(config, "lti", "approve", registration_id, "--deployment", "new-install")
    assert result.exit_code == 0 and result.stdout.splitlines()[1] == "\tdeployment new-install\tactive"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("register", "nowhere", *MOODLE_ARGS), "error: platform: 'nowhere' is not configured"),
        (
            ("register", "moodle1", *MOODLE_ARGS, "--jwks-url", "http://moodle.example.edu/certs"),
            "error: key_set_url: expected an https:// URL",
        ),
        (("approve", "999"), "error: no LTI registration 999"),
        (("disable", "999"), "error: no LTI registration 999"),
    ],
)
def test_a_refused_action_exits_1_with_the_reason(config: Path, args: tuple[str, ...], reason: str) -> None:
    result = run(config, "lti", *args)
    assert result.exit_code == 1
    assert reason in result.stderr
    assert result.stdout == ""


def test_a_duplicate_registration_or_an_unknown_deployment_is_refused(config: Path) -> None:
    registration_id = register_moodle(config)
    duplicate = run(config, "lti", "register", "moodle1", *MOODLE_ARGS)
    assert duplicate.exit_code == 1 and "is registered already" in duplicate.stderr
    unknown = run(config, "lti", "approve", registration_id, "--deployment", "9")
    assert (
        unknown.exit_code == 1 and f"registration {registration_id} has no deployment '9'" in unknown.stderr
    )


def test_a_registration_id_must_be_a_number(config: Path) -> None:
    result = run(config, "lti", "approve", "moodle1")
    assert result.exit_code == 2 and "not a valid integer" in result.stderr


def test_keys_lists_the_one_active_rs256_tool_key(config: Path) -> None:
    result = run(config, "lti", "keys")
    assert result.exit_code == 0
    [line] = result.stdout.splitlines()
    kid, alg, _created, state = line.split("\t")
    assert (alg, state) == ("RS256", "active")
    assert kid.startswith("rsa-")
    assert run(config, "lti", "keys").stdout == result.stdout  # made once, then kept


def test_rotate_key_makes_a_new_active_key_and_retires_the_old(config: Path) -> None:
    [old_line] = run(config, "lti", "keys").stdout.splitlines()
    old_kid = old_line.split("\t")[0]
    rotated = run(config, "lti", "rotate-key")
    assert rotated.exit_code == 0
    [announcement] = rotated.stdout.splitlines()
    assert announcement.startswith("new RS256 key rsa-")
    new_kid = announcement.rsplit(" ", 1)[1]
    assert new_kid != old_kid
    lines = [line.split("\t") for line in run(config, "lti", "keys").stdout.splitlines()]
    assert [(kid, alg, state.split(" ")[0]) for kid, alg, _, state in lines] == [
        (new_kid, "RS256", "active"),
        (old_kid, "RS256", "retired"),
    ]
    assert len(lines[1][3].split(" ")[1]) == len("2026-01-01")  # retired on a date


def test_invite_prints_a_registration_url_on_the_public_base_url(config: Path, tmp_path: Path) -> None:
    result = run(config, "lti", "invite", "moodle1")
    assert result.exit_code == 0
    url = result.stdout.strip()
    assert url.startswith("http://127.0.0.1:8000/lti/register?invite=")  # the default public_base_url
    assert "valid for 7 days" in result.stderr


def test_the_invite_is_for_the_named_platform(
    config: Path, database: Database, database_url: str, tmp_path: Path
) -> None:
    url = run(config, "lti", "invite", "moodle1").stdout.strip()
    [invite] = parse_qs(urlsplit(url).query)["invite"]
    tool = LtiTool(database, make_settings(database_url, tmp_path))
    assert tool.invited_platform(invite) == "moodle1"


def test_invite_uses_the_configured_https_base_url(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "c.toml", database_url, tmp_path, extra='public_base_url = "https://badges.example.org/"'
    )
    url = run(config, "lti", "invite", "demo").stdout.strip()
    assert url.startswith("https://badges.example.org/lti/register?invite=")


def test_invite_refuses_an_unknown_platform(config: Path) -> None:
    result = run(config, "lti", "invite", "nowhere")
    assert result.exit_code == 1
    assert "platform 'nowhere' is not configured" in result.stderr
    assert result.stdout == ""
