"""badge-bridge badges|awards|approvals|audit|progress, run in-process with click's runner."""

import json
import shutil
import threading
from pathlib import Path

from click.testing import CliRunner, Result

from bridge.cli import main
from bridge.db.engine import Database
from bridge.services.badges import shipped_templates_dir
from bridge.settings import Settings
from bridge.worker import Worker
from tests.conftest import write_config
from tests.helpers import awards_of, learning_event, store


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)


def test_badges_check_passes_the_shipped_templates(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path / 'unused.sqlite3'}", tmp_path)
    result = run(config, "badges", "check", str(shipped_templates_dir()))
    assert result.exit_code == 0
    assert "0 error(s)" in result.output


def test_badges_check_names_each_bad_file_key_and_reason_and_exits_1(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    shutil.copytree(shipped_templates_dir(), folder)
    (folder / "welcome.toml").write_text(
        (folder / "welcome.toml").read_text().replace('"login"', '"teleport"')
    )
    (folder / "loop.toml").write_text(
        'id = "loop"\nname = "Loop"\ndescription = "d"\nimage = "welcome.svg"\nprerequisites = ["loop"]\n'
        '[[criteria.groups]]\n[[criteria.groups.requirements]]\nkinds = ["login"]\ntarget = 1\n'
    )
    config = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path / 'unused.sqlite3'}", tmp_path)
    result = CliRunner().invoke(main, ["--config", str(config), "badges", "check", str(folder)])
    assert result.exit_code == 1
    assert (
        "welcome.toml: criteria.groups[0].requirements[0].kinds: unknown event kind 'teleport'"
        in result.stderr
    )
    assert "loop.toml: prerequisites: cycle: loop -> loop" in result.stderr


def test_a_badge_is_created_updated_and_disabled_from_the_cli(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", database_url, tmp_path)
    definition = tmp_path / "night-owl.toml"
    definition.write_text(
        'id = "night-owl"\nname = "Night Owl"\ndescription = "Five sign-ins."\nimage = "welcome.svg"\n'
        '[[criteria.groups]]\n[[criteria.groups.requirements]]\nkinds = ["login"]\ntarget = 5\n'
    )
    assert (
        run(config, "badges", "create", str(definition)).output.strip()
        == "night-owl created (criteria version 1)"
    )
    definition.write_text(definition.read_text().replace("target = 5", "target = 6"))
    assert "criteria version 2" in run(config, "badges", "update", "night-owl", str(definition)).output
    assert (
        run(config, "badges", "disable", "night-owl").output.strip()
        == "night-owl disabled (criteria version 2)"
    )
    listed = run(config, "badges", "list").output
    assert "night-owl" in listed and "disabled" in listed
    shown = json.loads(run(config, "badges", "show", "night-owl").output)
    assert shown["enabled"] is False and shown["source"] == "api"
    missing = CliRunner().invoke(main, ["--config", str(config), "badges", "show", "nope"])
    assert missing.exit_code == 1 and "no badge with id 'nope'" in missing.stderr


def test_award_revoke_and_the_audit_log_from_the_cli(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", database_url, tmp_path)
    granted = run(
        config, "awards", "grant", "demo", "42", "level-up", "--reason", "paper exam", "--as", "ms.smith"
    )
    assert granted.output.startswith("award ")
    award_id = granted.output.split()[1].rstrip(":")
    assert run(config, "awards", "revoke", award_id, "--reason", "wrong learner").output.strip() == (
        f"award {award_id} revoked"
    )
    log = run(config, "audit").output.splitlines()
    assert log[0].endswith("revoke level-up demo/42: wrong learner")
    assert "ms.smith award level-up demo/42: paper exam" in log[1]


def test_approvals_are_listed_and_decided_from_the_cli(
    database: Database, database_url: str, settings: Settings, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", database_url, tmp_path)
    forum = {"activity": "forum"}
    from bridge.domain.events import LearningEvent
    from tests.helpers import START

    store(
        database,
        *(LearningEvent("demo", f"f{i}", "activity_completed", "9", START, data=forum) for i in range(10)),
    )
    Worker(database, settings).run(threading.Event(), drain=True)
    listed = run(config, "approvals", "list").output
    assert "peer-mentor demo/9" in listed
    approval_id = listed.split()[0]
    assert "approved: award" in run(config, "approvals", "approve", approval_id).output
    assert ("9", "peer-mentor") in awards_of(database)


def test_progress_from_the_cli(
    database: Database, database_url: str, settings: Settings, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", database_url, tmp_path)
    store(database, *(learning_event(f"p{i}", kind="purchase", minutes=i) for i in range(30)))
    Worker(database, settings).run(threading.Event(), drain=True)
    output = run(config, "progress", "demo", "42").output
    assert "hundred-purchases" in output and "30 of 100 purchases" in output
    as_json = json.loads(run(config, "progress", "demo", "42", "--json").output)
    assert {v["badge_id"] for v in as_json} >= {"welcome", "hundred-purchases"}
