"""From stored events to progress, awards and points."""

import threading
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select, update

from bridge.bootstrap import open_database
from bridge.db.engine import Database
from bridge.db.models import Award, Badge, Learner, LearnerState, Progress
from bridge.services.awarding import award_sweep
from bridge.services.badges import load_template_files, sync_templates
from bridge.settings import Settings
from bridge.worker import Worker
from tests.conftest import make_settings
from tests.helpers import START, awards_of, count_badge_template, learning_event, progress_values, store


def drain(worker: Worker) -> None:
    worker.run(threading.Event(), drain=True)


def test_progress_counts_up_and_the_badge_is_awarded_at_the_target(database_url: str, tmp_path: Path) -> None:
    count_badge_template(tmp_path / "t", "five-logins", "login", 5)
    settings = make_settings(database_url, tmp_path, badge_templates_dir=tmp_path / "t")
    database = open_database(settings)
    store(database, *(learning_event(f"l{i}") for i in range(4)))
    drain(Worker(database, settings))
    assert progress_values(database, "five-logins") == {"42": 4.0}
    assert awards_of(database) == []
    store(database, learning_event("l4"), learning_event("l5"))
    drain(Worker(database, settings))
    assert progress_values(database, "five-logins") == {"42": 5.0}  # capped at the target
    assert awards_of(database) == [("42", "five-logins")]


def test_a_learners_states_are_one_row_and_the_report_says_when_a_badge_completed(
    database_url: str, tmp_path: Path
) -> None:
    count_badge_template(tmp_path / "t", "two-logins", "login", 2)
    count_badge_template(tmp_path / "t", "five-logins", "login", 5)
    settings = make_settings(database_url, tmp_path, badge_templates_dir=tmp_path / "t")
    database = open_database(settings)
    store(database, learning_event("l1"), learning_event("l2", minutes=5), learning_event("l3", minutes=9))
    drain(Worker(database, settings))
    with database.read() as session:
        (document,) = session.scalars(select(LearnerState.states)).all()
        reports = {r.badge_id: r for r in session.scalars(select(Progress))}
    assert sorted(document["records"]) == ["five-logins", "two-logins"]
    # The two badges differ only in target: one state of the learner's logins, counted up to 5.
    assert list(document["states"].values()) == [3]
    assert progress_values(database, "two-logins") == {"42": 2.0}
    assert progress_values(database, "five-logins") == {"42": 3.0}
    # Reported: the completed record, with the first event it counted; not the one on its way.
    assert list(reports) == ["two-logins"]
    assert (reports["two-logins"].complete, reports["two-logins"].started_at) == (True, START)


def test_learners_are_per_platform(database: Database, settings: Settings) -> None:
    store(database, learning_event("a", platform="demo"), learning_event("a", platform="moodle1"))
    drain(Worker(database, settings))
    with database.read() as session:
        assert sorted(tuple(r) for r in session.execute(select(Learner.platform, Learner.lms_user_id))) == [
            ("demo", "42"),
            ("moodle1", "42"),
        ]
    assert len(awards_of(database)) == 2


def test_points_accumulate_from_the_badge_and_points_per_badge(database_url: str, tmp_path: Path) -> None:
    count_badge_template(tmp_path / "t", "first", "login", 1, points=5)
    count_badge_template(tmp_path / "t", "shopper", "purchase", 1, points=20)
    settings = make_settings(database_url, tmp_path, badge_templates_dir=tmp_path / "t", points_per_badge=10)
    database = open_database(settings)
    store(database, learning_event("l1"), learning_event("l2"), learning_event("p1", kind="purchase"))
    drain(Worker(database, settings))
    with database.read() as session:
        assert session.scalar(select(Learner.points)) == (5 + 10) + (20 + 10)


def test_with_achievements_off_progress_is_kept_and_the_sweep_awards_later(
    database_url: str, tmp_path: Path
) -> None:
    off = make_settings(database_url, tmp_path, enable_achievements=False, points_per_badge=1)
    database = open_database(off)
    store(database, learning_event("l1"))
    drain(Worker(database, off))
    assert awards_of(database) == []
    assert progress_values(database, "welcome") == {"42": 1.0}
    on = make_settings(database_url, tmp_path, points_per_badge=1)
    assert award_sweep(database, on) == 1
    assert award_sweep(database, on) == 0
    assert awards_of(database) == [("42", "welcome")]
    with database.read() as session:
        assert session.scalar(select(Learner.points)) == 5 + 1  # the welcome template's points


def test_a_disabled_badge_is_not_evaluated(database: Database, settings: Settings) -> None:
    with database.write() as session:
        session.execute(update(Badge).where(Badge.id == "welcome").values(enabled=False))
    store(database, learning_event("l1"))
    drain(Worker(database, settings))
    assert awards_of(database) == []


def test_changed_criteria_get_a_new_version_and_progress_is_replayed(
    database_url: str, tmp_path: Path
) -> None:
    count_badge_template(tmp_path / "t", "logins", "login", 5)
    settings = make_settings(database_url, tmp_path, badge_templates_dir=tmp_path / "t")
    database = open_database(settings)
    store(database, *(learning_event(f"l{i}") for i in range(3)))
    drain(Worker(database, settings))

    count_badge_template(tmp_path / "t", "logins", "login", 4)
    sync_templates(
        database,
        load_template_files(
            tmp_path / "t", settings.track_event_types, settings.badge_level_threshold
        ).templates,
    )
    with database.read() as session:
        assert session.get(Badge, "logins").criteria_version == 2  # type: ignore[union-attr]
    store(database, learning_event("l3"))
    drain(Worker(database, settings))  # a fresh worker loads the new rule book
    assert progress_values(database, "logins") == {"42": 4.0}
    assert awards_of(database) == [("42", "logins")]


def test_a_template_sync_without_changes_keeps_the_version(database: Database, settings: Settings) -> None:
    from bridge.services.badges import shipped_templates_dir

    sync_templates(
        database,
        load_template_files(
            shipped_templates_dir(), settings.track_event_types, settings.badge_level_threshold
        ).templates,
    )
    with database.read() as session:
        assert {b.criteria_version for b in session.scalars(select(Badge))} == {1}


def test_an_award_unlocks_a_chain_of_complete_dependants_read_only_when_needed(
    database_url: str, tmp_path: Path
) -> None:
    """step-1 (login) <- step-2 (course_completed) <- step-3 (purchase): a login in a later batch awards
    step-1, which unlocks step-2, which unlocks step-3; step-3 is two links from the login's badges."""
    templates = tmp_path / "t"
    count_badge_template(templates, "step-1", "login", 1)
    count_badge_template(templates, "step-2", "course_completed", 1)
    count_badge_template(templates, "step-3", "purchase", 1)
    for badge_id, needed in (("step-2", "step-1"), ("step-3", "step-2")):
        path = templates / f"{badge_id}.toml"
        path.write_text(f'prerequisites = ["{needed}"]\n' + path.read_text())
    settings = make_settings(database_url, tmp_path, badge_templates_dir=templates)
    database = open_database(settings)
    store(database, learning_event("p", kind="purchase"), learning_event("c", kind="course_completed"))
    drain(Worker(database, settings))
    assert awards_of(database) == []
    store(database, learning_event("l", minutes=1))
    drain(Worker(database, settings))
    assert awards_of(database) == [("42", "step-1"), ("42", "step-2"), ("42", "step-3")]
    # Awards read on demand are read all the same: nothing is awarded twice.
    store(database, learning_event("p2", kind="purchase", minutes=2), learning_event("l2", minutes=2))
    drain(Worker(database, settings))
    assert len(awards_of(database)) == 3


def test_the_sweep_rebuilds_learners_who_sent_nothing_since_a_badge_changed(
    database_url: str, tmp_path: Path
) -> None:
    templates = tmp_path / "t"
    count_badge_template(templates, "logins", "login", 5)
    settings = make_settings(database_url, tmp_path, badge_templates_dir=templates)
    database = open_database(settings)
    store(
        database,
        *(learning_event(f"l{i}") for i in range(4)),
        learning_event("p", kind="purchase", learner="7"),
    )
    drain(Worker(database, settings))
    assert awards_of(database) == []

    # Four logins are now enough, and a new badge counts purchases; nobody sends another event.
    count_badge_template(templates, "logins", "login", 4)
    count_badge_template(templates, "shopper", "purchase", 1)
    sync_templates(
        database,
        load_template_files(templates, settings.track_event_types, settings.badge_level_threshold).templates,
    )
    assert award_sweep(database, settings) == 2
    assert sorted(awards_of(database)) == [("42", "logins"), ("7", "shopper")]
    assert progress_values(database, "logins") == {"42": 4.0}
    # Learner 7 never logged in: an empty record of the new criteria, so the next sweep looks no more.
    assert progress_values(database, "shopper") == {"7": 1.0}
    with database.read() as session:
        rebuilt = session.scalars(select(Progress).where(Progress.badge_id == "logins")).all()
        assert {(p.criteria_version, p.complete) for p in rebuilt} == {(2, True)}
    assert award_sweep(database, settings) == 0


def test_the_sweep_leaves_learners_first_seen_under_the_current_criteria_alone(
    database_url: str, tmp_path: Path
) -> None:
    templates = tmp_path / "t"
    count_badge_template(templates, "x-logins", "login", 2)
    path = templates / "x-logins.toml"
    path.write_text(path.read_text() + "filter = 'course == \"X\"'\n")  # matches none of these events
    settings = make_settings(database_url, tmp_path, badge_templates_dir=templates)
    database = open_database(settings)
    store(database, learning_event("l1"))
    drain(Worker(database, settings))
    with database.write() as session:
        # The rules predate the learner: every event of theirs was evaluated with them.
        session.execute(update(Badge).values(criteria_since=START - timedelta(days=30)))
        session.execute(update(Learner).values(created_at=START))
    assert award_sweep(database, settings) == 0
    assert progress_values(database, "x-logins") == {}  # nothing to rebuild: no record written
    with database.write() as session:  # seen before the rules: looked at once, an empty record
        session.execute(update(Learner).values(created_at=START - timedelta(days=60)))
    assert award_sweep(database, settings) == 0
    assert progress_values(database, "x-logins") == {"42": 0.0}


def test_more_than_a_thousand_new_learners_in_one_batch_are_all_created(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url, tmp_path, worker={"batch_size": 2500})
    database = open_database(settings)
    store(database, *(learning_event(f"e{n}", learner=f"L{n}") for n in range(2100)))
    drain(Worker(database, settings))
    with database.read() as session:
        assert session.scalar(select(func.count()).select_from(Learner)) == 2100
    assert len(awards_of(database)) == 2100  # each one's welcome badge


def test_learners_completing_badges_mid_batch_are_awarded_once_in_order_with_their_evidence(
    database_url: str, tmp_path: Path
) -> None:
    """A learner known before the batch who completes a badge in it has their awards read (on PostgreSQL:
    for all such learners at once, their later events waiting); none is awarded twice or out of order."""
    count_badge_template(tmp_path / "t", "two-logins", "login", 2, points=1)
    count_badge_template(tmp_path / "t", "four-logins", "login", 4, points=1)
    settings = make_settings(database_url, tmp_path, badge_templates_dir=tmp_path / "t")
    database = open_database(settings)
    store(database, *(learning_event(f"{who}-{n}", learner=who, minutes=n) for who in "ab" for n in (0, 1)))
    drain(Worker(database, settings))
    assert sorted(awards_of(database)) == [("a", "two-logins"), ("b", "two-logins")]
    # a: three more (four-logins at the second); b: one more (none); c: new, four at once.
    later = [learning_event(f"a-{n}", learner="a", minutes=n) for n in (2, 3, 4)]
    later += [learning_event("b-2", learner="b", minutes=2)]
    later += [learning_event(f"c-{n}", learner="c", minutes=n) for n in range(4)]
    ids = store(database, *later)
    drain(Worker(database, settings))
    assert sorted(awards_of(database)) == [
        ("a", "four-logins"), ("a", "two-logins"), ("b", "two-logins"),
        ("c", "four-logins"), ("c", "two-logins"),
    ]  # fmt: skip
    with database.read() as session:
        points = dict(session.execute(select(Learner.lms_user_id, Learner.points)).all())
        evidence = session.scalar(
            select(Award.event_ids)
            .join(Learner)
            .where(Learner.lms_user_id == "a", Award.badge_id == "four-logins")
        )
    assert points == {"a": 2, "b": 1, "c": 2}
    assert progress_values(database, "four-logins") == {"a": 4.0, "b": 3.0, "c": 4.0}
    # The events that earned it, latest first: up to the one it was earned at (a's fourth login).
    assert evidence[0] == ids[1] and ids[0] in evidence and ids[2] not in evidence and len(evidence) == 4
