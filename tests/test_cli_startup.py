"""How ``badge-bridge`` starts: ``--version`` and ``--help`` load nothing heavier than click, and with no
--config or $BRIDGE_CONFIG a command uses the demo's settings when the demo ran in this folder, or says in
one line how to name settings instead of making ./data."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge.cli import DEMO_CONFIG, DEMO_DATA_DIR, NO_SETTINGS, main
from bridge.db.engine import Database
from bridge.demo import write_config
from bridge.settings import load_settings
from bridge.worker import Worker
from tests.conftest import make_settings
from tests.helpers import learning_event, store
from tests.test_worker import FailingPipeline

HEAVY = ("pydantic", "pydantic_settings", "sqlalchemy", "alembic", "flask", "gunicorn", "rule_engine")


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["events", "failed", "--help"]])
def test_the_cli_answers_version_and_help_without_loading_settings_database_or_web_code(
    args: list[str],
) -> None:
    code = (
        "import sys\nfrom bridge.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        f"print('loaded:', *sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "loaded:"


def test_a_command_that_reads_only_the_inbox_starts_without_the_criteria_code(tmp_path: Path) -> None:
    """rule-engine builds its parser when imported (~0.3 s): only commands that load templates pay it."""
    code = (
        "import sys\nfrom bridge.cli import main\n"
        "try:\n    main(['events', 'failed'])\nexcept SystemExit:\n    pass\n"
        "print('loaded:', *sorted(m for m in ('rule_engine', 'bridge.domain.templates') if m in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["BRIDGE_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert done.stdout.splitlines() == ["no failed events", "loaded:"]


def test_the_leaderboard_command_offers_the_periods_and_metrics_the_service_knows() -> None:
    """Written out in the CLI so that its --help needs no database code; they must not drift apart."""
    from bridge import cli_reports
    from bridge.services import leaderboards

    assert (cli_reports.PERIODS, cli_reports.METRICS) == (leaderboards.PERIODS, leaderboards.METRICS)


def test_the_version_shown_is_the_installed_packages() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.stdout.split()[-1] == importlib.metadata.version("lms-badge-bridge")


@pytest.fixture
def no_settings_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An operator's shell in an empty folder, naming no settings file and no data location."""
    monkeypatch.chdir(tmp_path)
    for name in ("BRIDGE_CONFIG", "BRIDGE_DATA_DIR", "BRIDGE_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_the_demos_settings_are_used_from_the_folder_the_demo_ran_in_saying_so(
    no_settings_named: Path, database: Database, database_url: str
) -> None:
    store(database, learning_event("bad-1"))
    settings = make_settings(database_url, no_settings_named, worker={"max_attempts": 1})
    Worker(database, settings, pipeline=FailingPipeline({"bad-1"})).run_once()
    demo_dir = no_settings_named / DEMO_DATA_DIR
    demo_dir.mkdir()
    config = write_config(demo_dir.resolve(), "127.0.0.1:8000")  # as `badge-bridge demo` writes it
    assert config.resolve() == DEMO_CONFIG.resolve()
    # The demo's own database is SQLite in demo-data; pointed at the test's (PostgreSQL when set).
    config.write_text(f'database_url = "{database_url}"\n' + config.read_text())

    result = CliRunner().invoke(main, ["events", "failed"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"using the demo's settings in {DEMO_CONFIG} (--config or BRIDGE_CONFIG for others)"
    ]
    assert "bad-1" in result.stdout  # the event stored in the database the demo's settings name
    assert not (no_settings_named / "data").exists()


def test_with_no_settings_a_command_needing_the_database_says_how_to_name_them(
    no_settings_named: Path,
) -> None:
    for args in (["events", "failed"], ["badges", "list"], ["db", "upgrade"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, args
        assert result.stderr.splitlines() == [NO_SETTINGS]
    assert list(no_settings_named.iterdir()) == []  # no ./data made
    assert all(way in NO_SETTINGS for way in ("--config", "BRIDGE_CONFIG", "badge-bridge demo", "demo-data"))


def test_with_no_settings_the_default_data_folder_is_used_once_it_holds_a_database(
    no_settings_named: Path,
) -> None:
    """`badge-bridge serve` alone makes ./data (the embedded default); commands run beside it use it."""
    from bridge.bootstrap import open_database

    open_database(load_settings(None, data_dir=Path("data"))).dispose()

    result = CliRunner().invoke(main, ["events", "failed"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "no failed events"
    assert result.stderr == ""
