"""``badge-bridge leaderboard`` and ``badge-bridge analytics``, run in-process with click's runner."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from bridge.db.engine import Database
from bridge.services.analytics import CSV_COLUMNS
from bridge.settings import Settings
from tests.conftest import write_config
from tests.services.test_leaderboards import campus, reports_settings
from tests.test_cli import run


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return reports_settings(database_url, tmp_path)


@pytest.fixture
def config(database: Database, settings: Settings, database_url: str, tmp_path: Path) -> Path:
    """The campus of the leaderboard tests, and a settings file for the commands reading it."""
    campus(database, settings)
    extra = f'badge_templates_dir = "{settings.badge_templates_dir}"'
    return write_config(tmp_path / "c.toml", database_url, tmp_path, extra)


def test_the_leaderboard_prints_ranks_scores_and_names(config: Path) -> None:
    result = run(config, "leaderboard", "--platform", "demo")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "demo: points, all time (5 learners)",
        "   1      35  Ana",
        "   2      15  Abe",
        "   2      15  Bea",
        "   4      10  Learner dee",
        "   5       0  Eve",
    ]


def test_the_asker_is_added_below_the_top_and_marked(config: Path) -> None:
    lines = run(
        config, "leaderboard", "--platform", "demo", "--limit", "2", "--learner", "eve"
    ).output.splitlines()
    assert lines[1:] == ["   1      35  Ana", "   2      15  Abe", "   5       0  Eve  (you)"]


def test_a_course_section_board_as_json(config: Path) -> None:
    result = run(
        config,
        "leaderboard",
        "--platform",
        "demo",
        "--course",
        "C1",
        "--section",
        "A",
        "--period",
        "month",
        "--metric",
        "badges",
        "--json",
    )
    body = json.loads(result.output)
    assert (body["course"], body["section"], body["period"], body["metric"]) == ("C1", "A", "month", "badges")
    assert [(e["rank"], e["name"], e["score"]) for e in body["entries"]] == [(1, "Ana", 1), (2, "Eve", 0)]


def test_anonymised_names_come_from_the_settings_file(
    database: Database, settings: Settings, database_url: str, tmp_path: Path
) -> None:
    campus(database, settings)
    extra = f'badge_templates_dir = "{settings.badge_templates_dir}"\n[leaderboard]\nanonymise = true'
    config = write_config(tmp_path / "c.toml", database_url, tmp_path, extra)
    output = run(config, "leaderboard", "--platform", "demo", "--json").output
    assert all(e["learner"] is None for e in json.loads(output)["entries"])
    assert "Ana" not in output and "Learner dee" not in output


@pytest.mark.parametrize(
    ("args", "exit_code", "mentions"),
    [
        ((), 2, "--platform"),  # two platforms are configured: name one
        (("--platform", "nope"), 2, "'nope' is not configured"),
        (("--platform", "demo", "--section", "A"), 2, "only with --course"),
        (("--platform", "demo", "--period", "year"), 2, "--period"),
        (("--platform", "demo", "--limit", "0"), 2, "--limit"),
        (("--platform", "demo", "--learner", "nobody"), 1, "no learner 'nobody'"),
    ],
)
def test_bad_leaderboard_options_are_named(
    config: Path, args: tuple[str, ...], exit_code: int, mentions: str
) -> None:
    result = run(config, "leaderboard", *args)
    assert result.exit_code == exit_code
    assert mentions in result.output


def test_analytics_badges_as_a_table_and_as_csv(config: Path) -> None:
    lines = run(config, "analytics", "badges", "--platform", "demo").output.splitlines()
    assert lines[0] == "badge\teligible\tearned\trate\tmedian_hours\tlast_4_weeks"
    assert "module-master\t5\t1\t20.0%\t1\t1" in lines
    assert "graduate\t4\t0\t0.0%\t-\t0" in lines  # eligible: the four holding first-steps
    rows = list(csv.reader(io.StringIO(run(config, "analytics", "badges", "--course", "C1", "--csv").output)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert ["module-master", "Module Master", "3", "1", "0.3333", "1.0", "1"] in rows
    assert run(config, "analytics", "badges", "--platform", "nope").exit_code == 2


def test_analytics_weekly_counts_zero_filled_weeks(config: Path) -> None:
    lines = run(config, "analytics", "weekly", "--weeks", "3").output.splitlines()
    assert [line.split("\t")[1] for line in lines] == ["0", "0", "7"]
    weeks = [
        json.loads(line)
        for line in run(config, "analytics", "weekly", "--badge", "explorer", "--json").output.splitlines()
    ]
    assert len(weeks) == 12 and weeks[-1]["awards"] == 2
    bad = run(config, "analytics", "weekly", "--badge", "nope")
    assert bad.exit_code == 2 and "no badge 'nope'" in bad.output
