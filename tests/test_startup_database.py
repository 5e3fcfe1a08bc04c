"""A database that cannot be reached at start-up: one line naming the setting (password hidden), exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridge.bootstrap import DatabaseUnreachable, open_database
from tests.conftest import make_settings

BADGE_BRIDGE = str(Path(sys.executable).parent / "badge-bridge")
UNREACHABLE = "postgresql+psycopg://bridge:s3cret-pw@127.0.0.1:1/bridge"  # nothing listens on port 1
EXPECTED = (
    "config: database_url = 'postgresql+psycopg://bridge:***@127.0.0.1:1/bridge': "
    "cannot connect (connection refused)"
)


def run(args: list[str], tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")},
        "BRIDGE_DATA_DIR": str(tmp_path / "data"),
        **env,
    }
    started = time.monotonic()
    done = subprocess.run(
        [BADGE_BRIDGE, *args], env=environment, capture_output=True, text=True, timeout=60, check=False
    )
    return done, time.monotonic() - started


@pytest.mark.parametrize("command", [["serve"], ["worker"], ["scheduler"]])
def test_an_unreachable_database_url_stops_the_process_with_one_line(
    command: list[str], tmp_path: Path
) -> None:
    done, seconds = run(command, tmp_path, BRIDGE_DATABASE_URL=UNREACHABLE)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [EXPECTED]
    assert "s3cret-pw" not in done.stderr + done.stdout
    assert seconds < 20


def test_db_upgrade_on_an_unreachable_database_url_says_so_in_one_line(tmp_path: Path) -> None:
    done, _ = run(["db", "upgrade"], tmp_path, BRIDGE_DATABASE_URL=UNREACHABLE)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [EXPECTED]


def test_a_data_dir_where_the_default_database_cannot_be_made_names_data_dir(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the data directory should be")
    done, _ = run(["worker", "--drain"], tmp_path, BRIDGE_DATA_DIR=str(blocked / "data"))
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"config: data_dir = '{blocked / 'data'}': cannot open the database in it (")


def test_open_database_raises_one_line_naming_the_setting(tmp_path: Path) -> None:
    settings = make_settings("postgresql+psycopg://u:pw@127.0.0.1:1/x", tmp_path)
    with pytest.raises(DatabaseUnreachable) as raised:
        open_database(settings)
    assert raised.value.format_message() == (
        "config: database_url = 'postgresql+psycopg://u:***@127.0.0.1:1/x': "
        "cannot connect (connection refused)"
    )
    assert raised.value.exit_code == 2
