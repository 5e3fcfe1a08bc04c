"""badge-bridge keys list|rotate, run in-process with click's runner."""

from pathlib import Path

from click.testing import CliRunner, Result

from bridge.cli import main
from tests.conftest import write_config


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)


def test_keys_list_shows_the_first_pair_and_rotate_adds_a_new_active_one(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path / 'unused.sqlite3'}", tmp_path / "data")
    first = run(config, "keys", "list")
    assert first.exit_code == 0
    lines = first.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.endswith("active") for line in lines)
    rotated = run(config, "keys", "rotate")
    assert rotated.exit_code == 0
    assert "new RS256 key rsa-" in rotated.output and "new EdDSA key ed25519-" in rotated.output
    after = run(config, "keys", "list").stdout.strip().splitlines()
    assert len(after) == 4
    assert [line.rsplit("\t", 1)[1] for line in after] == ["active", "active", "retired", "retired"]
    assert "PRIVATE" not in first.output + rotated.output


def test_keys_are_made_in_the_data_directory_with_owner_only_files(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path / 'unused.sqlite3'}", tmp_path / "data")
    run(config, "keys", "list")
    pems = list((tmp_path / "data" / "keys").glob("*.pem"))
    assert len(pems) == 2 and all(p.stat().st_mode & 0o077 == 0 for p in pems)


def test_api_keys_are_made_with_a_scope_a_platform_and_an_expiry_and_listed_with_them(
    database_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", database_url, tmp_path / "data")
    made = run(
        config, "api-keys", "create", "lms", "--scope", "read", "--platform", "demo", "--expires-in", "30"
    )
    assert made.exit_code == 0 and made.stdout.startswith("bb_")
    assert run(config, "api-keys", "create", "ops", "--scope", "admin").exit_code == 0
    lms, ops = run(config, "api-keys", "list").stdout.strip().splitlines()
    name, created, scope, platform, expires, used, state = lms.split("\t")
    assert (name, scope, platform, used, state) == (
        "lms",
        "scope read",
        "platform demo",
        "never used",
        "active",
    )
    assert created.startswith("created ") and expires.startswith("expires ") and expires != "expires never"
    assert ops.split("\t")[2:5] == ["scope admin", "every platform", "expires never"]
    assert made.stdout.strip() not in run(config, "api-keys", "list").stdout  # shown once, at creation


def test_an_api_key_needs_a_scope_and_a_configured_platform(database_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", database_url, tmp_path / "data")
    no_scope = CliRunner().invoke(main, ["--config", str(config), "api-keys", "create", "x"])
    assert no_scope.exit_code == 2 and "--scope" in no_scope.output
    elsewhere = CliRunner().invoke(
        main, ["--config", str(config), "api-keys", "create", "x", "--scope", "read", "--platform", "nowhere"]
    )
    assert elsewhere.exit_code == 2 and "'nowhere' is not a configured platform" in elsewhere.output
