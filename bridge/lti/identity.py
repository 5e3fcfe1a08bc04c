"""Who an LTI user is here: the learner the platform's webhooks and sync name, with the name and email the
LMS gives, written only when something changed (a learner opens the tool many times a day).

The LMS's name and email stand for the learner unless the learner chose others: a name or email still
equal to what an LMS last said is the LMS's, and follows it; one the learner set (through the API) stays.
Statements in the caller's transaction (bridge.lti.store).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.clock import utcnow
from bridge.db.pseudonyms import new_pseudonym
from bridge.lti.store import Sql

# Service URLs and the title an earlier launch gave are kept when a launch leaves them out.
_KEPT_WHEN_ABSENT = ("title", "memberships_url", "lineitems_url", "ags_scopes")
_CONTEXT = ("deployment_id", "platform", "course", *_KEPT_WHEN_ABSENT)


@dataclass(frozen=True, slots=True)
class KnownLearner:
    id: int
    display_name: str | None
    created: bool = False  # made here: the learner was not known before


def learner_for(
    sql: Sql,
    platform: str,
    lms_user_id: str,
    registration_id: int,
    sub: str | None,
    name: str | None,
    email: str | None,
) -> KnownLearner:
    """The learner (created if new), their LTI user at this registration, and the LMS's name and email."""
    driver, m = sql.driver, sql.driver.mark
    # The learner and what every LMS last said of them, in one read (a learner has one LTI user per
    # registration that launched them: a few rows).
    find = (
        "SELECT l.id, l.display_name, l.email, u.registration_id, u.sub, u.name, u.email FROM learners l "
        f"LEFT JOIN lti_users u ON u.learner_id = l.id WHERE l.platform = {m} AND l.lms_user_id = {m}"
    )
    rows = sql.rows(find, (platform, lms_user_id))
    created = not rows
    if created:
        insert = (
            "INSERT INTO learners (platform, lms_user_id, points, pseudonym, created_at) "
            f"VALUES ({driver.marks(5)}) ON CONFLICT DO NOTHING"
        )
        row = (platform, lms_user_id, 0, new_pseudonym(), driver.time(utcnow()))
        sql.run(insert, row)
        rows = sql.rows(find, (platform, lms_user_id))
    learner_id, display_name, current_email = rows[0][:3]
    said = [row[3:] for row in rows if row[3] is not None]
    if sub is None:
        return KnownLearner(learner_id, display_name, created)
    changes: dict[str, Any] = {}
    if name and name != display_name and (display_name is None or display_name in {r[2] for r in said}):
        changes["display_name"] = display_name = name
    lowered = email.lower() if email else None
    lms_emails = {r[3].lower() for r in said if r[3]}
    if lowered and lowered != current_email and (current_email is None or current_email in lms_emails):
        changes["email"] = lowered
    if changes:
        assignments = ", ".join(f"{column} = {m}" for column in changes)
        update = f"UPDATE learners SET {assignments} WHERE id = {m}"
        sql.run(update, (*changes.values(), learner_id))
    if not any(r[0] == registration_id and r[1] == sub and (r[2], r[3]) == (name, email) for r in said):
        upsert = (
            "INSERT INTO lti_users (registration_id, sub, learner_id, name, email, updated_at) "
            f"VALUES ({driver.marks(6)}) ON CONFLICT (registration_id, sub) DO UPDATE SET "
            "learner_id = excluded.learner_id, name = excluded.name, email = excluded.email, "
            "updated_at = excluded.updated_at"
        )
        row = (registration_id, sub, learner_id, name, email, driver.time(utcnow()))
        sql.run(upsert, row)
    return KnownLearner(learner_id, display_name, created)


def remember_context(
    sql: Sql,
    registration_id: int,
    context_id: str,
    values: Mapping[str, Any],
    learner_id: int,
) -> None:
    """The course as launched (its LTI Advantage endpoints, from this validated launch only), and the
    learner as one of its members. ``values`` has every name in ``_CONTEXT``."""
    driver, m = sql.driver, sql.driver.mark
    where = f"registration_id = {m} AND context_id = {m}"
    columns = ", ".join(_CONTEXT)
    stored = sql.rows(f"SELECT {columns} FROM lti_contexts WHERE {where}", (registration_id, context_id))
    now = driver.time(utcnow())
    if not stored:
        insert = (
            f"INSERT INTO lti_contexts (registration_id, context_id, {columns}, grade_sync, updated_at) "
            f"VALUES ({driver.marks(2 + len(_CONTEXT) - 1)}, {driver.json_mark}, {m}, {m}) "
            "ON CONFLICT DO NOTHING"
        )
        row = [registration_id, context_id, *(values[name] for name in _CONTEXT[:-1])]
        sql.run(insert, (*row, driver.json(values["ags_scopes"] or []), False, now))
    else:
        current = dict(zip(_CONTEXT, stored[0], strict=True))
        current["ags_scopes"] = driver.read_json(current["ags_scopes"])
        changed = {
            name: value
            for name, value in values.items()
            if (value or name not in _KEPT_WHEN_ABSENT) and current[name] != value
        }
        if changed:
            marks = [f"{name} = {driver.json_mark if name == 'ags_scopes' else m}" for name in changed]
            encoded = [driver.json(v) if name == "ags_scopes" else v for name, v in changed.items()]
            update = f"UPDATE lti_contexts SET {', '.join(marks)}, updated_at = {m} WHERE {where}"
            sql.run(update, (*encoded, now, registration_id, context_id))
    add_course_member(sql, learner_id, values["course"])


def add_course_member(sql: Sql, learner_id: int, course: str) -> None:
    """The learner counts in the course's leaderboards and analytics from now on."""
    member = (
        f"INSERT INTO course_members (learner_id, course, first_seen_at) VALUES ({sql.driver.marks(3)}) "
        "ON CONFLICT DO NOTHING"
    )
    sql.run(member, (learner_id, course, sql.driver.time(utcnow())))
