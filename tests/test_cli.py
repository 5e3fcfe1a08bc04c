"""The badge-bridge command line, run in-process with click's runner."""

from pathlib import Path

from click.testing import CliRunner, Result

from bridge.cli import main
from bridge.db.engine import Database
from bridge.worker import Worker
from tests.conftest import make_settings, write_config
from tests.helpers import learning_event, statuses, store
from tests.test_worker import FailingPipeline


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)


def test_db_upgrade_and_current(database_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", database_url, tmp_path)
    assert "database at revision" in run(config, "db", "upgrade").output
    output = run(config, "db", "current").output
    database_revision, code_revision = output.removeprefix("database: ").strip().split("; code: ")
    assert database_revision == code_revision


def test_failed_events_are_listed_and_retried(database: Database, database_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", database_url, tmp_path)
    store(database, learning_event("bad-1"), learning_event("bad-2"))
    settings = make_settings(database_url, tmp_path, worker={"max_attempts": 1})
    Worker(database, settings, pipeline=FailingPipeline({"bad-1", "bad-2"})).run_once()

    listed = run(config, "events", "failed").output
    assert "bad-1" in listed and "ValueError: cannot process bad-1" in listed
    assert '"event_key": "bad-2"' in run(config, "events", "failed", "--json").output

    assert run(config, "events", "retry", "1").output.strip() == "1 event(s) queued again"
    assert statuses(database) == {"pending": 1, "failed": 1}
    assert run(config, "events", "retry", "--all").output.strip() == "1 event(s) queued again"
    assert run(config, "events", "failed").output.strip() == "no failed events"
    assert run(config, "events", "retry").exit_code == 2  # neither ids nor --all


def test_api_keys_are_created_listed_and_revoked(database_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", database_url, tmp_path)
    key = run(config, "api-keys", "create", "shop", "--scope", "write").output.strip()
    assert key.startswith("bb_") and len(key) > 40
    assert run(config, "api-keys", "create", "shop", "--scope", "write").exit_code == 1
    assert "shop\tcreated" in run(config, "api-keys", "list").output
    assert run(config, "api-keys", "revoke", "shop").output.strip() == "revoked shop"
    assert "revoked" in run(config, "api-keys", "list").output.split("\t")[-1]
    assert run(config, "api-keys", "revoke", "shop").exit_code == 1


def test_a_worker_drains_the_queue(database: Database, database_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", database_url, tmp_path)
    store(database, learning_event("a"), learning_event("b"))
    assert run(config, "worker", "--drain").exit_code == 0
    assert statuses(database) == {"done": 2}


def test_retrying_ids_that_are_not_failed_says_why_for_each_and_exits_1(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", database_url, tmp_path)
    done, failed = store(database, learning_event("done-1"), learning_event("bad-1"))
    settings = make_settings(database_url, tmp_path, worker={"max_attempts": 1})
    Worker(database, settings, pipeline=FailingPipeline({"bad-1"})).run_once()
    [pending] = store(database, learning_event("new-1"))

    refused = run(config, "events", "retry", str(done), str(pending), "999", "--", "-5")
    assert refused.exit_code == 1
    assert refused.stderr.splitlines() == [
        f"event {done} not retried: it is done (processed already; nothing to retry)",
        f"event {pending} not retried: it is still pending (queued for the worker, not failed)",
        "event 999 not retried: no such event",
        "webhook follow-up 5 (-5) not retried: no such follow-up (one that succeeded is removed)",
    ]
    assert refused.stdout.strip() == "0 event(s) queued again"
    assert statuses(database) == {"done": 1, "failed": 1, "pending": 1}

    # Among ids that are retried, the others still get their line, and the exit status is 0.
    mixed = run(config, "events", "retry", str(failed), str(done))
    assert mixed.exit_code == 0
    assert mixed.stderr.splitlines() == [
        f"event {done} not retried: it is done (processed already; nothing to retry)"
    ]
    assert mixed.stdout.strip() == "1 event(s) queued again"
    assert statuses(database) == {"done": 1, "pending": 2}
