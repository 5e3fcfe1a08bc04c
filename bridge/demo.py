"""``badge-bridge demo``: a data directory with a demo platform, the shipped badges and sample events."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from bridge.domain.events import LearningEvent

DEMO_PLATFORM = "demo"
_CONFIG = """\
# Written by 'badge-bridge demo'. Every option is documented in config.example.toml.
data_dir = "{data_dir}"
api_access = "write"
public_base_url = "http://{bind}"   # where badges say they live: the demo's own address

[server]
bind = "{bind}"

[[platforms]]
id = "demo"
kind = "custom"
name = "Demo school"
"""


def sample_events(now: datetime) -> list[LearningEvent]:
    """A term's worth of activity for twelve learners; the same list every time (fixed seed and keys)."""
    rng = random.Random(7)
    start = now - timedelta(days=30)
    events: list[LearningEvent] = []

    def add(learner: str, kind: str, key: str, day: int, **fields: object) -> None:
        events.append(
            LearningEvent(
                platform=DEMO_PLATFORM,
                event_key=f"{learner}:{key}",
                kind=kind,
                learner=learner,
                occurred_at=start + timedelta(days=day),
                **fields,
            )
        )

    for n in range(12):
        learner = str(101 + n)
        for day in sorted(rng.sample(range(30), rng.randint(1, 12))):
            add(learner, "login", f"login:{day}", day)
        for module in range(rng.randint(0, 8)):
            add(
                learner,
                "module_completed",
                f"module:DL101:{module}",
                3 + module * 3,
                course="DL101",
                item=f"module-{module}",
            )
        if rng.random() < 0.5:
            add(learner, "course_completed", "course:DL101", 29, course="DL101")
        for assignment in range(rng.randint(0, 12)):
            add(
                learner,
                "assignment_graded",
                f"grade:DL101:{assignment}",
                2 + assignment * 2,
                course="DL101",
                item=f"assignment-{assignment}",
                score=round(rng.uniform(0.5, 1.0), 2),
            )
    for purchase in range(100):
        add("101", "purchase", f"purchase:{purchase}", purchase % 30, data={"amount_cents": 250})
    # Quizzes, forum posts and course grades, drawn apart so the events above stay as they were.
    more = random.Random(11)
    for n in range(12):
        learner = str(101 + n)
        for quiz in range(more.randint(0, 4)):
            score = round(more.uniform(0.6, 1.0), 2)
            add(
                learner,
                "quiz_graded",
                f"quiz:DL101:{quiz}",
                4 + quiz * 6,
                course="DL101",
                item=f"quiz-{quiz}",
                score=score,
            )
        for post in range(more.choice((0, 0, 3, 10))):
            add(
                learner,
                "activity_completed",
                f"forum:DL101:{post}",
                1 + post * 2,
                course="DL101",
                data={"activity": "forum"},
            )
    for learner in ("101", "104", "107"):
        add(
            learner,
            "course_graded",
            "course-grade:DL101",
            29,
            course="DL101",
            score=round(more.uniform(0.85, 1.0), 2),
        )
    return events


def write_config(data_dir: Path, bind: str) -> Path:
    """The demo's settings, ``<data_dir>/config.toml``: written on the first run, kept after. Run from
    the folder holding the default ``demo-data``, the other commands find them there (bridge/cli.py)."""
    config = data_dir / "config.toml"
    if not config.exists():
        config.write_text(_CONFIG.format(data_dir=data_dir.as_posix(), bind=bind), encoding="utf-8")
    return config


def run_demo(data_dir: Path, bind: str) -> None:
    from bridge.bootstrap import open_database
    from bridge.logs import configure_logging
    from bridge.server import prepare_metrics_dir, serve
    from bridge.services.api_keys import create_key
    from bridge.services.ingest import Inbox
    from bridge.settings import SettingsError, load_settings

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        settings = load_settings(write_config(data_dir, bind))
    except SettingsError as error:
        raise click.ClickException("; ".join(error.lines)) from None
    prepare_metrics_dir(settings.data_dir)
    configure_logging(settings.log_level)

    database = open_database(settings)
    key_file = data_dir / "demo-api-key"
    if not key_file.exists():
        key_file.touch(mode=0o600)
        key_file.write_text(create_key(database, "demo"), encoding="utf-8")
    key = key_file.read_text(encoding="utf-8").strip()
    stored = Inbox(database).store(sample_events(datetime.now(UTC)))
    database.dispose()

    base = f"http://{settings.server.bind}"
    auth = f'-H "Authorization: Bearer {key}"'
    click.echo(
        f"""
LMS Badge Bridge demo — data in {data_dir}
  {sum(s.created for s in stored)} new sample events stored ({len(stored)} in the demo set); the worker is
  turning them into awards now: watch for "award.made" lines below.

  Health:   {base}/healthz
  Metrics:  {base}/metrics
  Awards:   curl -s {auth} {base}/api/v1/awards
  Learner:  curl -s {auth} '{base}/api/v1/awards?platform=demo&learner=101'
            (each award's "assertion" is its Open Badge: open it in a browser for the badge page)
  Progress: curl -s {auth} {base}/api/v1/learners/demo/102/progress
  Ranking:  curl -s {auth} '{base}/api/v1/leaderboards?platform=demo&course=DL101&learner=102'
  Waiting:  curl -s {auth} {base}/api/v1/approvals          (peer-mentor needs an instructor)
  Badges:   curl -s {auth} {base}/api/v1/badges
  Add one:  curl -s {auth} -H 'Content-Type: application/json' \\
              -d '{{"platform":"demo","event_key":"hello-1","kind":"login","learner":"999"}}' \\
              {base}/api/v1/events

  (API key for this demo: {key_file})
""",
        err=True,
    )
    serve(settings, embedded=True)
