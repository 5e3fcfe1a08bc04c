"""The incremental evaluator ends where a from-scratch re-evaluation (tests/oracle.py) ends.

For random event streams, with duplicates, in any order, delivered in several chunks that the worker
drains one after another (in random batch sizes), the engine's progress, awards and learner points must
equal those the oracle computes from the set of distinct events. That is the README's promise: "a
learner's progress on a badge depends only on the set of their events, never on the order they arrive in
or on duplicates".

More examples: ``BRIDGE_ORACLE_EXAMPLES=500 pytest tests/services/test_evaluation_oracle.py``.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import tomllib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from bridge.bootstrap import open_database
from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Award, Badge, Base, Learner, LearnerState, Progress
from bridge.domain.events import LearningEvent
from bridge.services.ledgers import reading_ledger
from bridge.services.processing import rules_lag
from bridge.worker import Worker
from tests import oracle
from tests.conftest import make_settings
from tests.helpers import rulebook_of, statuses, store

EXAMPLES = int(os.environ.get("BRIDGE_ORACLE_EXAMPLES", "60"))
KEPT_TABLES = frozenset({"badges", "api_keys", "leases"})
WORKER = {"idle_sleep_seconds": 0.05, "backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05}
SVG = '<svg xmlns="http://www.w3.org/2000/svg"/>'

LEVELS = [10, 25, 45]  # the badge_level_threshold setting
POINTS_PER_BADGE = 1
FILTERS: dict[str, oracle.Predicate] = {"score >= 0.5": lambda event: event.score >= 0.5}  # type: ignore[operator]

# The badges under test, one TOML body each (the header keys are added by `template_document`). Their
# points add up so that the level badge's tiers are reachable, the last one only through level awards.
BADGES: dict[str, str] = {
    "logins": """
points = 2
[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["login"]
target = 3
""",
    "good-grades": """
points = 3
[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["assignment_graded"]
filter = 'score >= 0.5'
aggregate = "count"
target = 2
""",
    "explorer": """
points = 3
[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["activity_completed"]
aggregate = "distinct"
field = "item"
target = 3
""",
    "regular": """
points = 2
[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["login", "activity_completed"]
aggregate = "distinct"
field = "day"
target = 4
""",
    "scorer": """
points = 4
[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["assignment_graded"]
aggregate = "sum"
field = "score"
target = 2.5
""",
    "ace": """
points = 3
[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["assignment_graded"]
aggregate = "max"
field = "score"
target = 0.8
""",
    "streaker": """
points = 4
[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["login"]
aggregate = "streak"
target = 3
""",
    "completionist": """
points = 4
[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["activity_completed"]
aggregate = "all"
items = ["a", "b", "c"]
""",
    "sprint": """
points = 2
[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["activity_completed", "assignment_graded"]
aggregate = "count"
target = 3
within_days = 3
""",
    "weekly": """
points = 1
[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["login"]
aggregate = "count"
target = 2
per = "week"
""",
    "daily-trio": """
points = 2
[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["login", "activity_completed", "assignment_graded"]
aggregate = "distinct"
field = "item"
target = 3
per = "day"
""",
    "ladder": """
points = 3
[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["login", "activity_completed", "assignment_graded"]
aggregate = "count"
[[tiers]]
name = "bronze"
target = 2
points = 1
[[tiers]]
name = "silver"
target = 4
points = 2
[[tiers]]
name = "gold"
target = 6
""",
    "graduate": """
points = 5
prerequisites = ["logins", "ladder"]
[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["activity_completed"]
target = 1
""",
    "all-rounder": """
points = 3
[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["login"]
aggregate = "count"
target = 2
[[criteria.groups.requirements]]
kinds = ["activity_completed"]
aggregate = "sum"
field = "data.points"
target = 10
[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["assignment_graded"]
aggregate = "distinct"
field = "item"
target = 2
""",
    # Three that differ from badges above only in target: the learner keeps one state for each pair.
    "long-streaker": """
points = 0
[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["login"]
aggregate = "streak"
target = 5
""",
    "busy-week": """
points = 0
[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["login"]
aggregate = "count"
target = 3
per = "week"
""",
    "explorer-plus": """
points = 0
[[criteria.groups]]
[[criteria.groups.requirements]]
kinds = ["activity_completed"]
aggregate = "distinct"
field = "item"
target = 4
""",
    "level": """
points = 1
tiers = "badge_level_threshold"
[[criteria.groups]]
[[criteria.groups.requirements]]
aggregate = "points"
""",
}
POINTS_BADGES = frozenset({"level"})  # progress compared only through awards (see the module docstring)

LEARNERS = [("demo", "1"), ("demo", "2"), ("moodle1", "1")]  # ("moodle1", "1") is not ("demo", "1")
KINDS = ["login", "activity_completed", "assignment_graded"]
ITEMS = ["a", "b", "c", "d"]
TIMEZONES = ["UTC", "Pacific/Auckland", "America/New_York", "Asia/Kolkata"]
FIRST_DAY = datetime(
    2026, 10, 19, tzinfo=UTC
)  # a Monday; 21 days on cross two DST changes (London, New York)


def template_document(badge_id: str) -> str:
    header = f'id = "{badge_id}"\nname = "{badge_id}"\ndescription = "Test badge"\nimage = "{badge_id}.svg"\n'
    return header + BADGES[badge_id]


def write_templates(directory: Path) -> list[oracle.Badge]:
    """Write every template beside its SVG; the oracle reads the very same documents."""
    directory.mkdir(parents=True, exist_ok=True)
    badges = []
    for badge_id in BADGES:
        document = template_document(badge_id)
        (directory / f"{badge_id}.toml").write_text(document, encoding="utf-8")
        (directory / f"{badge_id}.svg").write_text(SVG, encoding="utf-8")
        badges.append(
            oracle.badge_from_document(tomllib.loads(document), filters=FILTERS, level_thresholds=LEVELS)
        )
    return badges


# --- Scenarios -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    timezone: str
    batch_size: int
    achievements: bool
    # The badges' criteria came long before the learners (the steady state: a badge on its way keeps no
    # record), or just now (every learner is seen soon after: records pin the states to the criteria).
    rules_long_before: bool
    events: tuple[LearningEvent, ...]  # the distinct events
    chunks: tuple[tuple[LearningEvent, ...], ...]  # what is delivered: duplicated, shuffled, cut up


scores = st.one_of(st.none(), st.integers(0, 20).map(lambda k: k / 20), st.floats(0.0, 1.0))
extra_data = st.one_of(st.just({}), st.integers(0, 8).map(lambda n: {"points": n}))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    learners = draw(st.lists(st.sampled_from(LEARNERS), min_size=1, max_size=3, unique=True))
    # Sometimes dense, sometimes spread out; 120 days reach past what streaks and windows keep
    # (aggregates.HORIZON_DAYS), so late events rebuild states from history.
    span_minutes = draw(st.sampled_from([3, 7, 21, 120])) * 24 * 60
    count = draw(st.integers(0, 50))
    keys: Counter[str] = Counter()  # counted per platform: "e1" occurs on two platforms as two events
    events = []
    for _ in range(count):
        platform, user = draw(st.sampled_from(learners))
        kind = draw(st.sampled_from(KINDS))
        keys[platform] += 1
        events.append(
            LearningEvent(
                platform=platform,
                event_key=f"e{keys[platform]}",
                kind=kind,
                learner=user,
                occurred_at=FIRST_DAY + timedelta(minutes=draw(st.integers(0, span_minutes - 1))),
                item=draw(st.one_of(st.none(), st.sampled_from(ITEMS))),
                score=draw(scores),
                data=draw(extra_data),
            )
        )
    duplicates = draw(st.lists(st.sampled_from(events), max_size=len(events))) if events else []
    stream = draw(st.permutations(events + duplicates))
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=3)))
    bounds = [0, *cuts, len(stream)]
    chunks = tuple(tuple(stream[a:b]) for a, b in itertools.pairwise(bounds))
    return Scenario(
        timezone=draw(st.sampled_from(TIMEZONES)),
        batch_size=draw(st.sampled_from([1, 2, 3, 7, 100])),
        achievements=draw(st.sampled_from([True, True, True, False])),
        rules_long_before=draw(st.booleans()),
        events=tuple(events),
        chunks=chunks,
    )


# --- Running the engine and reading what it decided ------------------------------------------------------


def _reset(database: Database) -> None:
    """Empty every table but the badges and the operational ones, for the next example."""
    with database.write() as session:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name not in KEPT_TABLES:
                session.execute(table.delete())


@dataclass(frozen=True)
class Observed:
    progress: dict[tuple[oracle.LearnerKey, str], oracle.BadgeProgress]
    awards: frozenset[tuple[oracle.LearnerKey, str, str]]
    points: dict[oracle.LearnerKey, int]
    revoked: int
    misreported: list[str]  # progress reports that do not say what the state does


def _observe(database: Database, lag: timedelta) -> Observed:
    """The engine's end state: progress worked out from each learner's stored states (as the progress
    API does), checked against the progress report of each record."""
    with database.read() as session:
        rows = list(session.scalars(select(Learner)))
        learners = {row.id: row for row in rows}
        points = {(row.platform, row.lms_user_id): row.points for row in rows}
        rules = rulebook_of(session)
        reports = {(row.learner_id, row.badge_id): row for row in session.scalars(select(Progress))}
        progress, misreported = {}, []
        for learner_id, document in session.execute(select(LearnerState.learner_id, LearnerState.states)):
            row = learners[learner_id]
            learner = (row.platform, row.lms_user_id)
            ledger = reading_ledger(document, row.points, row.created_at, lag)
            for badge in rules.badges:
                badge_id = badge.id
                worked_out = ledger.progress_of(badge)
                if worked_out is None:
                    continue  # not of the current criteria: rebuilt at the learner's next event
                progress[learner, badge_id] = oracle.BadgeProgress(
                    worked_out.value, worked_out.target, worked_out.complete, worked_out.tier
                )
                record = ledger.records.get(badge_id)
                # A badge on its way may have no record (see bridge.domain.evaluation); one that counts
                # has one, and its report: every record complete or with a tier, and every record of a
                # tiered badge. A record on its way may have no report, or one that says it is on its way.
                if record is None:
                    started = badge.criteria.tiers and worked_out.value > 0
                    if worked_out.complete or worked_out.tier or started:
                        misreported.append(f"record {learner} {badge_id}: none, the state says {worked_out}")
                    continue
                report = reports.get((learner_id, badge_id))
                said = None if report is None else (report.criteria_version, report.complete, report.tier)
                must = worked_out.complete or worked_out.tier or badge.criteria.tiers
                if said != (record.criteria_version, worked_out.complete, worked_out.tier) and (
                    must or (report is not None and (report.complete or report.tier))
                ):
                    misreported.append(f"report {learner} {badge_id}: {said}, the state says {worked_out}")
        all_awards = list(session.scalars(select(Award)))
    return Observed(
        progress=progress,
        awards=frozenset(
            ((learners[a.learner_id].platform, learners[a.learner_id].lms_user_id), a.badge_id, a.tier)
            for a in all_awards
        ),
        points=points,
        revoked=sum(a.revoked_at is not None for a in all_awards),
        misreported=misreported,
    )


def _differences(expected: oracle.Outcome, observed: Observed) -> list[str]:
    """Every way the engine's end state differs from the oracle's, one line each."""
    found = []
    for (learner, badge_id), want in sorted(expected.progress.items()):
        if badge_id in POINTS_BADGES:
            continue
        got = observed.progress.get((learner, badge_id))
        if got is None:  # no row: the learner had no event this badge listens to; value 0 then
            if want.value != 0 or want.complete or want.tier:
                found.append(f"progress {learner} {badge_id}: no row, expected {want}")
            continue
        if not (
            math.isclose(got.value, want.value, abs_tol=1e-6)
            and math.isclose(got.target, want.target, abs_tol=1e-6)
            and got.complete == want.complete
            and got.tier == want.tier
        ):
            found.append(f"progress {learner} {badge_id}: got {got}, expected {want}")
    for key, got in sorted(observed.progress.items()):
        if key not in expected.progress and got.value != 0:
            found.append(f"progress {key}: a row with {got} for a learner without events")
    for learner, badge_id, tier in sorted(observed.awards - expected.awards):
        found.append(f"award {learner} {badge_id} {tier!r}: made, but not expected")
    for learner, badge_id, tier in sorted(expected.awards - observed.awards):
        found.append(f"award {learner} {badge_id} {tier!r}: expected, but not made")
    for learner in sorted(set(expected.points) | set(observed.points)):
        got_points, want_points = observed.points.get(learner, 0), expected.points.get(learner, 0)
        if got_points != want_points:
            found.append(f"points {learner}: got {got_points}, expected {want_points}")
    if observed.revoked:
        found.append(f"{observed.revoked} awards revoked: events never revoke an award")
    return found + observed.misreported


def test_incremental_evaluation_ends_where_the_oracle_does(database_url: str, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    badges = write_templates(templates)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(scenario=scenarios())
    def check(scenario: Scenario) -> None:
        config = make_settings(
            database_url,
            tmp_path,
            badge_templates_dir=templates,
            timezone=scenario.timezone,
            points_per_badge=POINTS_PER_BADGE,
            badge_level_threshold=LEVELS,
            enable_achievements=scenario.achievements,
            worker={**WORKER, "batch_size": scenario.batch_size},
        )
        database = open_database(config)
        try:
            _reset(database)
            with database.write() as session:
                since = utcnow() - (timedelta(days=30) if scenario.rules_long_before else timedelta(0))
                session.execute(update(Badge).values(criteria_since=since))
            with database.read() as session:
                loaded = set(session.scalars(select(Badge.id)))
            assert set(BADGES) <= loaded, f"templates that did not load (see the log): {set(BADGES) - loaded}"
            worker = Worker(database, config)
            for chunk in scenario.chunks:
                if chunk:
                    store(database, *chunk)
                worker.run(threading.Event(), drain=True)
            distinct = len({(e.platform, e.event_key) for e in scenario.events})
            assert statuses(database) == ({"done": distinct} if distinct else {})
            observed = _observe(database, rules_lag(config))
        finally:
            database.dispose()
        expected = oracle.evaluate(
            badges,
            scenario.events,
            timezone=scenario.timezone,
            points_per_badge=POINTS_PER_BADGE,
            achievements_enabled=scenario.achievements,
        )
        differences = _differences(expected, observed)
        for line in differences:
            note(line)
        assert not differences, f"{len(differences)} differences from the oracle, first: {differences[0]}"

    check()


# --- The oracle itself, on hand-computed cases ------------------------------------------------------------


def _doc(body: str, badge_id: str = "b") -> oracle.Badge:
    return oracle.badge_from_document(
        tomllib.loads(f'id = "{badge_id}"\n{body}'), filters=FILTERS, level_thresholds=[5, 12, 20]
    )


def _event(key: str, kind: str, at: datetime, **fields: object) -> LearningEvent:
    return LearningEvent("demo", key, kind, "7", at, **fields)  # type: ignore[arg-type]


LEARNER = ("demo", "7")


def test_oracle_days_are_local_calendar_days() -> None:
    # In UTC these four logins fall on Mon 2, Mon 2, Tue 3 and Wed 4 November 2026. In Auckland (UTC+13
    # then) they fall on Mon 2 (23:30), Tue 3 (00:30), Wed 4 (01:00) and Thu 5 (12:00) November.
    logins = [
        _event("l1", "login", datetime(2026, 11, 2, 10, 30, tzinfo=UTC)),
        _event("l2", "login", datetime(2026, 11, 2, 11, 30, tzinfo=UTC)),
        _event("l3", "login", datetime(2026, 11, 3, 12, 0, tzinfo=UTC)),
        _event("l4", "login", datetime(2026, 11, 4, 23, 0, tzinfo=UTC)),
    ]
    requirement = '[[criteria.groups]]\n[[criteria.groups.requirements]]\nkinds = ["login"]\n'
    streak = _doc(requirement + 'aggregate = "streak"\ntarget = 9\n')
    days = _doc(requirement + 'aggregate = "distinct"\nfield = "day"\ntarget = 9\n')
    in_two_days = _doc(requirement + "target = 9\nwithin_days = 2\n")
    for zone, want_streak, want_days, want_in_two_days in [
        ("UTC", 3, 3, 3),  # Mon+Tue hold three
        ("Pacific/Auckland", 4, 4, 2),  # one login a day
    ]:
        for badge, want in [(streak, want_streak), (days, want_days), (in_two_days, want_in_two_days)]:
            got = oracle.badge_progress(badge, logins, ZoneInfo(zone), 0)
            assert (zone, got.value) == (zone, want)
    # Sunday 8 November, 11:30 UTC, is Monday 9 November, 00:30 in Auckland: the next week there.
    weekly = _doc(requirement + 'target = 9\nper = "week"\n')
    sunday = [*logins, _event("l5", "login", datetime(2026, 11, 8, 11, 30, tzinfo=UTC))]
    assert oracle.badge_progress(weekly, sunday, ZoneInfo("UTC"), 0).value == 5
    assert oracle.badge_progress(weekly, sunday, ZoneInfo("Pacific/Auckland"), 0).value == 4
    assert oracle.period("week", date(2026, 11, 8)) == date(2026, 11, 2)
    assert oracle.longest_run({date(2026, 1, d) for d in (1, 2, 3, 5, 6, 7, 8, 31)}) == 4


def test_oracle_groups_sum_their_best_requirement_and_sums_are_exact() -> None:
    badge = oracle.badge_from_document(
        tomllib.loads('id = "all-rounder"\n' + BADGES["all-rounder"]), filters=FILTERS
    )
    at = datetime(2026, 11, 2, 9, tzinfo=UTC)
    seen = [
        _event("l1", "login", at),
        _event("a1", "activity_completed", at, data={"points": 5}),
        _event("g1", "assignment_graded", at, item="a"),
    ]
    # Group 1: 1 of 2 logins and 5 of 10 points tie at one half; the first wins: 1 of 2.
    # Group 2: 1 of 2 distinct items. The badge: 2 of 4.
    assert oracle.badge_progress(badge, seen, ZoneInfo("UTC"), 0) == oracle.BadgeProgress(2, 4, False)
    seen.append(_event("a2", "activity_completed", at, data={"points": 7}))
    # 12 points, capped at 10, are now the best of group 1 (ratio 1): 10 of 10, plus 1 of 2.
    assert oracle.badge_progress(badge, seen, ZoneInfo("UTC"), 0) == oracle.BadgeProgress(11, 12, False)
    seen.append(_event("g2", "assignment_graded", at, item="b"))
    outcome = oracle.evaluate([badge], [*seen, *reversed(seen)])  # each event twice, in two orders
    assert outcome.progress[(LEARNER, "all-rounder")] == oracle.BadgeProgress(12, 12, True)
    assert outcome.awards == {(LEARNER, "all-rounder", "")}

    # Ten scores of 0.1 reach 1.0 exactly, though adding the floats gives 0.9999999999999999.
    scorer = _doc(
        '[[criteria.groups]]\n[[criteria.groups.requirements]]\nkinds = ["assignment_graded"]\n'
        'aggregate = "sum"\nfield = "score"\ntarget = 1\n'
    )
    tenths = [_event(f"g{i}", "assignment_graded", at, score=0.1) for i in range(10)]
    assert sum(e.score or 0 for e in tenths) < 1
    assert oracle.badge_progress(scorer, tenths, ZoneInfo("UTC"), 0) == oracle.BadgeProgress(1, 1, True)
    # The filter: an event without a score does not match, it does not fail.
    good = oracle.badge_from_document(
        tomllib.loads('id = "good-grades"\n' + BADGES["good-grades"]), filters=FILTERS
    )
    graded = [_event("x", "assignment_graded", at), _event("y", "assignment_graded", at, score=0.5)]
    assert oracle.badge_progress(good, graded, ZoneInfo("UTC"), 0).value == 1


def test_oracle_tiers_prerequisites_approval_and_levels() -> None:
    count = '[[criteria.groups]]\n[[criteria.groups.requirements]]\nkinds = ["{}"]\ntarget = 1\n'
    badges = [
        _doc("points = 4\n" + count.format("login"), "first"),
        _doc(
            'points = 3\n[[criteria.groups]]\n[[criteria.groups.requirements]]\nkinds = ["login"]\n'
            '[[tiers]]\nname = "bronze"\ntarget = 1\npoints = 1\n'
            '[[tiers]]\nname = "silver"\ntarget = 3\npoints = 2\n'
            '[[tiers]]\nname = "gold"\ntarget = 5\n',
            "ladder",
        ),
        _doc(
            'points = 5\nprerequisites = ["first", "ladder"]\n' + count.format("activity_completed"), "next"
        ),
        _doc("points = 10\nrequires_approval = true\n" + count.format("login"), "vetted"),
        _doc('points = 10\nprerequisites = ["vetted"]\n' + count.format("login"), "after-vetted"),
        _doc(
            'points = 1\ntiers = "badge_level_threshold"\n[[criteria.groups]]\n'
            '[[criteria.groups.requirements]]\naggregate = "points"\n',
            "level",
        ),
    ]
    at = datetime(2026, 11, 2, 9, tzinfo=UTC)
    events = [_event(f"l{i}", "login", at) for i in range(3)] + [_event("a", "activity_completed", at)]
    outcome = oracle.evaluate(badges, events, points_per_badge=1)
    # first: 4+1. ladder at 3 logins: bronze 1+1 and silver 2+1. next (holds first and a ladder tier):
    # 5+1. That is 16 points: levels 5 (bronze) and 12 (silver) give 1+1 each, 20 points, which reaches
    # the gold level (20): 22 points. vetted waits for approval, so after-vetted waits with it.
    assert outcome.awards == {
        (LEARNER, "first", ""),
        (LEARNER, "ladder", "bronze"),
        (LEARNER, "ladder", "silver"),
        (LEARNER, "next", ""),
        (LEARNER, "level", "bronze"),
        (LEARNER, "level", "silver"),
        (LEARNER, "level", "gold"),
    }
    assert outcome.points == {LEARNER: 22}
    assert outcome.progress[(LEARNER, "ladder")] == oracle.BadgeProgress(3, 5, False, "silver")
    assert outcome.progress[(LEARNER, "level")] == oracle.BadgeProgress(20, 20, True, "gold")
    assert outcome.progress[(LEARNER, "after-vetted")] == oracle.BadgeProgress(1, 1, True)
    off = oracle.evaluate(badges, events, points_per_badge=1, achievements_enabled=False)
    assert off.awards == frozenset() and off.points == {LEARNER: 0}
    assert off.progress[(LEARNER, "ladder")].tier == "silver"  # progress is kept all the same
