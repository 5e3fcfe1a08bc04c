"""learner_states: requirement states kept once per learner by what they measure, shared by badges

A document was ``{badge_id: [version, {requirement: state}, started, complete, tier, saturated]}``; it
becomes ``{"records": {badge_id: [version, started, complete, tier, saturated]}, "states": {key:
state}}``, where a requirement's key is what it measures without its target (``shape_key``), so that
badges whose requirements differ only in target read one state.

A record whose criteria are not its badge's current ones keeps no state: the evaluator rebuilds it from
the learner's history, as it did before. Where several badges' states fall under one key, the state of
the requirement with the highest target is kept: states are capped at their own target, so it holds
the most.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 18:30:00
"""

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_states = sa.table("learner_states", sa.column("learner_id", _ID), sa.column("states", _JSON))
_badges = sa.table(
    "badges",
    sa.column("id", sa.String),
    sa.column("criteria", _JSON),
    sa.column("tiers", _JSON),
    sa.column("criteria_version", sa.Integer),
)


class _Requirement:
    """A requirement of a badge's stored criteria: its old key, its new key and its target."""

    def __init__(self, old_key: str, new_key: str, target: float) -> None:
        self.old_key, self.new_key, self.target = old_key, new_key, target


def upgrade() -> None:
    connection = op.get_bind()
    badges = _requirements_of_badges(connection)
    for learner_id, old in _documents(connection):
        records: dict[str, list[Any]] = {}
        chosen: dict[str, tuple[float, Any]] = {}  # new key -> (target, state)
        for badge_id, (version, state, started, complete, tier, saturated) in old.items():
            records[badge_id] = [version, started, complete, tier, saturated]
            current_version, requirements = badges.get(badge_id, (None, []))
            if version != current_version:
                continue
            for requirement in requirements:
                if requirement.old_key not in state:
                    continue
                known = chosen.get(requirement.new_key)
                if known is None or requirement.target > known[0]:
                    chosen[requirement.new_key] = (requirement.target, state[requirement.old_key])
        new = {"records": records, "states": {key: state for key, (_, state) in chosen.items()}}
        _write(connection, learner_id, new)


def downgrade() -> None:
    connection = op.get_bind()
    badges = _requirements_of_badges(connection)
    for learner_id, new in _documents(connection):
        states = new["states"]
        old: dict[str, list[Any]] = {}
        for badge_id, (version, started, complete, tier, saturated) in new["records"].items():
            current_version, requirements = badges.get(badge_id, (None, []))
            state = {}
            if version == current_version and not saturated:  # 0006 kept no state for a saturated one
                state = {r.old_key: states[r.new_key] for r in requirements if r.new_key in states}
            old[badge_id] = [version, state, started, complete, tier, saturated]
        _write(connection, learner_id, old)


def _documents(connection: sa.Connection) -> Iterable[tuple[int, dict[str, Any]]]:
    rows = connection.execute(sa.select(_states.c.learner_id, _states.c.states)).all()
    for learner_id, document in rows:
        yield learner_id, json.loads(document) if isinstance(document, str) else document


def _write(connection: sa.Connection, learner_id: int, document: dict[str, Any]) -> None:
    connection.execute(_states.update().where(_states.c.learner_id == learner_id).values(states=document))


def _requirements_of_badges(connection: sa.Connection) -> dict[str, tuple[int, list[_Requirement]]]:
    """Each badge's current criteria version and its requirements on events, read from its criteria
    document as the templates parser reads it (key ``g{group}r{requirement}`` before, the shape after)."""
    found: dict[str, tuple[int, list[_Requirement]]] = {}
    rows = connection.execute(
        sa.select(_badges.c.id, _badges.c.criteria, _badges.c.tiers, _badges.c.criteria_version)
    )
    for badge_id, criteria, tiers, version in rows:
        criteria = json.loads(criteria) if isinstance(criteria, str) else criteria
        tiers = json.loads(tiers) if isinstance(tiers, str) else tiers
        requirements = []
        for g, group in enumerate(criteria.get("groups") or []):
            for r, raw in enumerate(group.get("requirements") or []):
                aggregate = raw.get("aggregate", "count")
                if aggregate == "points":
                    continue
                requirements.append(_Requirement(f"g{g}r{r}", _shape_key(raw), _target(raw, tiers)))
        found[badge_id] = (version, requirements)
    return found


def _target(raw: dict[str, Any], tiers: list[dict[str, Any]] | None) -> float:
    if raw.get("aggregate") == "all":
        return float(len(set(raw.get("items") or [])))
    if tiers:
        return float(tiers[-1]["target"])
    return float(raw.get("target", 0))


def _shape_key(raw: dict[str, Any]) -> str:
    """``bridge.domain.criteria.shape_key`` of a requirement's document, written out here so that this
    migration keeps meaning what it meant (tests/db/test_migrations.py holds the two together)."""
    aggregate = raw.get("aggregate", "count")
    if aggregate in ("count", "streak"):
        field = None
    elif aggregate == "all":
        field = raw.get("field") or "item"
    else:
        field = raw.get("field")
    items = raw.get("items") if aggregate == "all" else None
    shape = {
        "kinds": sorted(set(raw.get("kinds") or [])),
        "aggregate": aggregate,
        "field": field,
        "filter": raw.get("filter"),
        "items": None if items is None else sorted(set(items), key=repr),
        "within_days": raw.get("within_days"),
        "per": raw.get("per"),
    }
    text = json.dumps(shape, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
