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
