"""Learner page benchmark: the server time of the LTI learner page beside the same data as JSON, in one run.

A learner with history in a course of a Moodle platform: 50 badges (the 20 shipped templates and 30
generated ones: counts, distinct items, sums, maxima, streaks, weekly and 14-day windows, filters, tiers,
prerequisites), a few hundred events of several kinds over the past eight weeks, processed by a real
``Worker``, and 30 classmates for the course leaderboard. The learner opens the tool through a real LTI
launch (the fake platform of tests/lti/platform.py). Then, alternating in one run, through Flask's test
client (wall and CPU time around each request):

- html: ``GET /lti/courses/<course>?lt=<token>``, the learner page as the LMS frame shows it
  (``learner_overview`` and ``templates/lti/learner.html`` through ``render_page``).
- json: the same launch check and the same ``learner_overview(...)`` call, answered as
  ``jsonify(dataclasses.asdict(overview))`` by a route this benchmark adds to its own app instance.

Aim: html / json <= 3.0 in wall time (the page may cost at most three times its data as JSON).
``--profile`` also runs the page under cProfile and prints where its time goes.

    .venv/bin/python benchmarks/learner_page.py
    .venv/bin/python benchmarks/learner_page.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import io
import pstats
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Blueprint, Flask, Response, jsonify, request
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from benchmarks.ingest import postgres_database
from bridge.app import create_app
from bridge.bootstrap import open_database
from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.migrate import upgrade
from bridge.db.models import Award, Badge
from bridge.domain.events import LearningEvent
from bridge.lti.launch import LaunchRefused
from bridge.lti.registry import register
from bridge.services.badges import shipped_templates_dir
from bridge.services.learner_page import learner_overview
from bridge.settings import Settings, load_settings
from bridge.web.context import Services, services
from bridge.web.pages import launch_context
from bridge.web.pages_learner import PERIODS
from bridge.worker import Worker
from tests.helpers import store
from tests.lti.platform import FakePlatform, registration_of

AIM = 3.0
BASE = "http://localhost"  # Flask's test client serves http://localhost
LAUNCH_URL = f"{BASE}/lti/launch"
LEARNER = "105"  # the Moodle user id the fake platform's launch names by default
CLASSMATES = 30
BADGES = 50

# (requirement, sizes): 24 generated badges of one requirement each, beside the shipped 20.
SHAPES = [
    ('kinds = ["login"]\ntarget = {n}', (5, 60, 100, 150)),
    ('kinds = ["module_completed"]\naggregate = "distinct"\nfield = "item"\ntarget = {n}', (3, 28, 40)),
    ('kinds = ["assignment_graded"]\naggregate = "sum"\nfield = "score"\ntarget = {n}', (3, 25, 40)),
    ('kinds = ["quiz_graded"]\naggregate = "max"\nfield = "score"\ntarget = 0.{n}', (7, 99)),
    ('kinds = ["login", "activity_completed"]\naggregate = "streak"\ntarget = {n}', (3, 21, 40)),
    ('kinds = ["activity_completed"]\nper = "week"\ntarget = {n}', (2, 20, 25)),
    ('kinds = ["module_completed"]\nwithin_days = 14\ntarget = {n}', (3, 12)),
    ('kinds = ["assignment_graded"]\nfilter = "score >= 0.8"\ntarget = {n}', (3, 25)),
    ('kinds = ["login", "purchase"]\naggregate = "distinct"\nfield = "day"\ntarget = {n}', (10, 70)),
]
# Three tiered badges: the learner holds one tier or two, the next one is on its way.
TIERED = [
    ('kinds = ["activity_completed"]', (10, 30, 120)),
    ('kinds = ["quiz_graded"]', (5, 15, 60)),
    ('kinds = ["login", "activity_completed"]\naggregate = "distinct"\nfield = "day"', (10, 25, 80)),
]
# Three locked badges: their prerequisites are badges the learner will not hold.
LOCKED = ["hundred-purchases", "honours", "golden-fit"]


def generated_templates(directory: Path) -> None:
    """The 30 generated badges, each with an SVG beside it."""
    image = (shipped_templates_dir() / "welcome.svg").read_text()
    count = 0

    def write(body: str, extra: str = "") -> None:
        nonlocal count
        count += 1
        badge = f"generated-{count:02d}"
        (directory / f"{badge}.svg").write_text(image)
        (directory / f"{badge}.toml").write_text(
            f'id = "{badge}"\nname = "Generated {count}"\ndescription = "A benchmark badge."\n'
            f'image = "{badge}.svg"\npoints = 3\n{extra}'
            f"[[criteria.groups]]\n[[criteria.groups.requirements]]\n{body}\n"
        )

    for shape, sizes in SHAPES:
        for n in sizes:
            write(shape.format(n=n))
    for requirement, targets in TIERED:
        tiers = "".join(
            f'\n[[tiers]]\nname = "{name}"\ntarget = {target}\npoints = {points}\n'
            for name, target, points in zip(("bronze", "silver", "gold"), targets, (5, 10, 20), strict=True)
        )
        write(requirement + "\n" + tiers)
    for needed in LOCKED:
        write('kinds = ["login"]\ntarget = 3', extra=f'prerequisites = ["{needed}"]\n')
    assert count == 30, count


def history(course: str, seed: int = 16) -> list[LearningEvent]:
    """The learner's eight weeks in the course (~330 events) and their classmates' (20-80 each), in time
    order, the latest this morning."""
    rng = random.Random(seed)
    now = utcnow().replace(microsecond=0)
    made: list[LearningEvent] = []

    def event(learner: str, kind: str, days_ago: float, **fields: object) -> None:
        key = f"{learner}-{kind}-{len(made)}"
        at = now - timedelta(days=days_ago)
        made.append(LearningEvent("moodle1", key, kind, learner, at, course=course, **fields))  # type: ignore[arg-type]

    for day in range(56, 0, -1):
        if day % 9 == 0:
            continue  # a day off now and then: streaks stop and start again
        event(LEARNER, "login", day + 0.5)
        for _ in range(rng.randrange(1, 4)):
            event(LEARNER, "activity_completed", day + rng.uniform(0.0, 0.4), item=f"act-{rng.randrange(60)}")
        if rng.random() < 0.6:
            event(LEARNER, "module_completed", day + 0.3, item=f"module-{rng.randrange(30)}")
        if rng.random() < 0.5:
            score = round(rng.uniform(0.5, 1.0), 2)
            event(LEARNER, "assignment_graded", day + 0.2, item=f"assign-{day}", score=score)
        if rng.random() < 0.4:
            score = round(rng.uniform(0.4, 0.95), 2)
            event(LEARNER, "quiz_graded", day + 0.1, item=f"quiz-{day}", score=score)
        if rng.random() < 0.3:
            event(LEARNER, "purchase", day + 0.05)
    event(LEARNER, "course_graded", 3.0, score=0.85)
    for mate in range(CLASSMATES):
        learner = str(1000 + mate)
        for _ in range(rng.randrange(20, 80)):
            kind = rng.choice(["login", "activity_completed", "module_completed", "assignment_graded"])
            score = round(rng.random(), 2) if kind == "assignment_graded" else None
            event(learner, kind, rng.uniform(0.1, 56.0), item=f"item-{rng.randrange(30)}", score=score)
    made.sort(key=lambda e: e.occurred_at)
    return made


def prepare(directory: Path, platform: FakePlatform, database_url: str | None) -> tuple[Flask, Settings]:
    """The app on a fresh database with the 50 badges, the fake platform registered, the JSON twin added."""
    templates = directory / "templates"
    shutil.copytree(shipped_templates_dir(), templates)
    generated_templates(templates)
    settings = load_settings(
        None,
        data_dir=directory,
        database_url=database_url,
        badge_templates_dir=templates,
        public_base_url=BASE,
        platforms=[{"id": "moodle1", "kind": "moodle", "base_url": platform.base_url}],
        log_level="WARNING",
    )
    database = open_database(settings)
    with database.write() as session:
        # The rules were in place long before these events (as in evaluator.py): no replays from history.
        session.execute(update(Badge).values(criteria_since=utcnow() - timedelta(days=120)))
        badges = session.scalar(select(func.count()).select_from(Badge).where(Badge.enabled))
    if badges != BADGES:
        raise SystemExit(f"expected {BADGES} badges to load, found {badges} (see the log above)")
    register(database, registration_of(platform, "moodle1"), actor="benchmark", known_platforms={"moodle1"})
    app = create_app(settings, database)
    app.register_blueprint(json_twin)
    return app, settings


json_twin = Blueprint("bench_json", __name__, url_prefix="/bench")


@json_twin.get("/courses/<path:course>")
def course_json(course: str) -> Response:
    """What ``pages_learner.course_page`` and ``_learner_page`` do, answered as JSON."""
    context = launch_context()
    if context.course != course:
        raise LaunchRefused("wrong_context", "This page belongs to another course.", 403)
    period = request.args.get("period", "week")
    if period not in PERIODS:
        period = "week"
    context_services = services()
    overview = learner_overview(
        context_services.database,
        context_services.settings,
        context_services.publisher,
        context.platform,
        context.lms_user_id,
        course=context.course,
        period=period,  # type: ignore[arg-type]
        only_badge=request.args.get("badge"),
    )
    return jsonify(dataclasses.asdict(overview))  # the app's JSON provider writes datetimes as ISO 8601


def launch(app: Flask, platform: FakePlatform) -> tuple[FlaskClient, str, str]:
    """A launch as the LMS makes it (login, authorize, launch): the browser, the course and the token."""
    browser = app.test_client()
    params = platform.login_params({"sub": LEARNER}, target_link_uri=LAUNCH_URL)
    started = browser.get(f"/lti/login?{urlencode(params)}")
    action, fields = platform.authorize(started.headers["Location"])
    launched = browser.post(urlsplit(action).path, data=fields)
    assert launched.status_code == 303, launched.get_data(as_text=True)
    page = urlsplit(launched.headers["Location"])
    token = re.search(r"(?:^|&)lt=([^&]+)", page.query)
    assert token and page.path.startswith("/lti/courses/"), launched.headers["Location"]
    return browser, page.path.removeprefix("/lti/courses/"), token.group(1)


@dataclasses.dataclass
class PageCheck:
    size: int
    earned: int  # award cards (a tiered badge shows one card per tier held)
    in_progress: int
    locked: int
    distinct: int  # badges on the page, whatever their section


def check(browser: FlaskClient, html_path: str, json_path: str, database: Database) -> PageCheck:
    """Both answer 200, and the page shows every one of the 50 badges, as the JSON tells them."""
    page, data = browser.get(html_path), browser.get(json_path)
    for name, response in (("html", page), ("json", data)):
        if response.status_code != 200:
            answer = response.get_data(as_text=True)[:500]
            raise SystemExit(f"{name}: answered {response.status_code}: {answer}")
    html, overview = page.get_data(as_text=True), data.get_json()
    earned = re.findall(r'<li class="card card--earned">\s*<img src="[^"]*/ob/images/([^"/]+)\.png"', html)
    progress = re.findall(r'<li class="card">\s*<div class="grow">\s*<h3 id="badge-([^"]+)"', html)
    locked = re.findall(r'<li class="card card--locked">\s*<div class="grow">\s*<h4>([^<]+)</h4>', html)
    assert earned == [e["badge_id"] for e in overview["earned"]], (earned, overview["earned"])
    assert progress == [p["badge_id"] for p in overview["in_progress"]], progress
    assert locked == [p["name"] for p in overview["locked"]], locked
    distinct = {*earned, *progress, *(p["badge_id"] for p in overview["locked"])}
    if len(distinct) != BADGES:
        raise SystemExit(f"the page shows {len(distinct)} badges, expected {BADGES}")
    with database.read() as session:
        awards = session.scalar(select(func.count()).select_from(Award).where(Award.revoked_at.is_(None)))
    board = overview["board"]
    print(
        f"page: {len(html):,} bytes of HTML, {len(data.get_data()):,} of JSON; {len(distinct)} badges: "
        f"{len(set(earned))} earned ({len(earned)} cards with tiers), {len(progress)} in progress, "
        f"{len(locked)} locked; leaderboard {len(board['entries'])} shown of {board['total']} "
        f"({awards} awards in the course)"
    )
    return PageCheck(len(html), len(earned), len(progress), len(locked), len(distinct))


def timed(browser: FlaskClient, path: str) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    response = browser.get(path)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if response.status_code != 200:
        raise SystemExit(f"{path}: answered {response.status_code}")
    return wall, cpu


def profile(browser: FlaskClient, path: str, requests: int, top: int) -> None:
    """The page under cProfile: the largest costs by function, own time and with what they call."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(requests):
        browser.get(path)
    profiler.disable()
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order)
        stats.print_stats(top)
        print(f"\n--- cProfile of {requests} page requests, by {order} ---")
        print(out.getvalue().split("\n\n", 1)[-1].rstrip())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300, help="requests per side (default 300)")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server to run the bridge on (a fresh database beside the one named)",
    )
    parser.add_argument("--profile", action="store_true", help="then profile the page with cProfile")
    parser.add_argument("--top", type=int, default=30, help="functions shown by --profile (default 30)")
    args = parser.parse_args()
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        platform = stack.enter_context(FakePlatform("moodle", redirect_uris=(LAUNCH_URL,)))
        url = None
        if args.database_url:
            url = stack.enter_context(postgres_database(args.database_url))
            upgrade(Database(url))
        app, settings = prepare(directory, platform, url)
        database = services_of(app).database
        _, course, _ = launch(app, platform)  # the learner's first launch: their name, their course
        store(database, *history(course))
        Worker(database, settings).run(threading.Event(), drain=True)
        browser, course, token = launch(app, platform)  # a fresh launch, as the learner opens the tool
        html_path, json_path = f"/lti/courses/{course}?lt={token}", f"/bench/courses/{course}?lt={token}"
        check(browser, html_path, json_path, database)
        code = run(args.requests, browser, {"html": html_path, "json": json_path}, url)
        if args.profile:
            profile(browser, html_path, args.requests, args.top)
        database.dispose()
        return code


def services_of(app: Flask) -> Services:
    return app.extensions["bridge"]  # as bridge.web.context.services() finds them in a request


def run(requests: int, browser: FlaskClient, paths: dict[str, str], database_url: str | None) -> int:
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
    for _ in range(20):  # first requests: template compilation, caches, connections
        for path in paths.values():
            timed(browser, path)
    gc.collect()
    names = list(paths)
    for n in range(requests):
        # Alternating, and each side first every other time: drift and after-effects hit both alike.
        for name in names if n % 2 == 0 else reversed(names):
            timings[name].append(timed(browser, paths[name]))

    def median(name: str, part: Callable[[tuple[float, float]], float]) -> float:
        return statistics.median(part(t) for t in timings[name]) * 1e6

    database = "PostgreSQL" if database_url else "SQLite"
    print(f"learner page, {requests} requests per side, {database}, median µs per request (in process)")
    print(f"{'side':<8}{'wall µs':>10}{'CPU µs':>10}")
    for name in paths:
        print(f"{name:<8}{median(name, lambda t: t[0]):>10.0f}{median(name, lambda t: t[1]):>10.0f}")
    ratio = median("html", lambda t: t[0]) / median("json", lambda t: t[0])
    cpu_ratio = median("html", lambda t: t[1]) / median("json", lambda t: t[1])
    verdict = "OK" if ratio <= AIM else "MISS"
    print(f"ratio html/json: wall {ratio:.2f}x, CPU {cpu_ratio:.2f}x (aim <= {AIM:.1f}x wall): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
