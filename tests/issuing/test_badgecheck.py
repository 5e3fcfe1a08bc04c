"""Every OB 2.0 assertion the bridge issues passes 1EdTech's validator core (badgecheck), run offline in
its own venv against the bridge served over real HTTP on 127.0.0.1; broken ones fail it.

What badgecheck cannot see (hosted ``revoked``/410 with a full body, the issuer ``email``, a revocation
list with a single entry) is tested in tests/web/test_badges_public.py.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from bridge.app import create_app
from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Award
from bridge.domain.events import LearningEvent
from bridge.issuing.publisher import Publisher
from bridge.issuing.records import award_record, set_badge_profile
from bridge.services.manual_awards import ManualAwards
from bridge.settings import Settings
from bridge.worker import Worker
from tests.conftest import PLATFORMS, free_port, make_settings
from tests.helpers import START, store
from tests.issuing.badgecheck import Overrides, badgecheck_python, live_server, run_badgecheck
from tests.issuing.support import award

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def badgecheck() -> Path:
    return badgecheck_python()


@dataclass
class Served:
    app: Flask
    settings: Settings
    database: Database
    overrides: Overrides
    base: str

    @property
    def publisher(self) -> Publisher:
        return self.app.extensions["bridge"].publisher

    def case(self, name: str, award_id: int, recipient: dict[str, str] | None = None) -> dict[str, Any]:
        """A badgecheck case for an award: its URL (hosted) or its JWS (signed)."""
        record = award_record(self.database, award_id)
        assert record is not None
        given = self.publisher.signed_assertion(record) if self.publisher.is_signed(record) else None
        case: dict[str, Any] = {"name": name, "input": given or self.publisher.assertion_url(award_id)}
        if recipient is not None:
            case["recipient"] = recipient
        return case

    def path(self, url: str) -> str:
        return url.removeprefix(self.base)


@pytest.fixture
def served(database: Database, database_url: str, tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    signed_school = {"name": "Signed School", "email": "badges@school.example", "signed": True}
    settings = make_settings(
        database_url,
        tmp_path,
        public_base_url=f"http://127.0.0.1:{port}",
        platforms=[PLATFORMS[0], {**PLATFORMS[1], "issuer": signed_school}],
    )
    app = create_app(settings, database)
    with live_server(app, port) as overrides:
        yield Served(app, settings, database, overrides, f"http://127.0.0.1:{port}")


def test_every_issued_assertion_passes_badgecheck(served: Served, badgecheck: Path, tmp_path: Path) -> None:
    database, settings = served.database, served.settings
    alice = award(database, settings, "welcome", learner="alice")
    set_badge_profile(database, "demo", "alice", public=False, actor="admin", email="alice@example.org")
    no_email = award(database, settings, "safety-certified", learner="42")  # expires in a year
    tiered = award(database, settings, "rising-star", learner="42", tier="gold")
    store(database, LearningEvent("demo", "login-1", "login", "7", START, course="DL101"))
    Worker(database, settings).run(threading.Event(), drain=True)  # the rules award welcome to 7
    signed = award(database, settings, "welcome", learner="m1", platform="moodle1")
    set_badge_profile(database, "moodle1", "m1", public=False, actor="admin", email="m1@school.example")

    record = award_record(database, no_email)
    assert record is not None
    fallback = served.publisher.issued(record).recipient.identity
    alice_png = tmp_path / "alice.png"
    alice_record = award_record(database, alice)
    assert alice_record is not None
    alice_png.write_bytes(served.publisher.baked_png(alice_record, 2) or b"")
    signed_record = award_record(database, signed)
    assert signed_record is not None
    signed_before_rotation = served.publisher.signed_assertion(signed_record)
    served.publisher.keys.rotate()  # `badge-bridge keys rotate`; what is served from now on is re-signed
    signed_png = tmp_path / "signed.png"
    signed_png.write_bytes(served.publisher.baked_png(signed_record, 2) or b"")

    with database.read() as session:
        every_award = list(session.scalars(select(Award.id).order_by(Award.id)))
    assert len(every_award) == 5
    cases = [served.case(f"award {a}", a) for a in every_award]
    cases += [
        served.case("alice, recipient matched", alice, {"email": "alice@example.org"}),
        served.case("fallback identity matched", no_email, {"url": fallback}),
        served.case("signed, recipient matched", signed, {"email": "m1@school.example"}),
        {"name": "baked PNG (hosted)", "file": str(alice_png)},
        {"name": "baked PNG (signed)", "file": str(signed_png)},
    ]
    reports = run_badgecheck(badgecheck, cases)
    failed = {name: r["errors"] for name, r in reports.items() if not r["valid"]}
    assert failed == {}
    assert len(reports) == len(cases) and tiered in every_award

    # A known limit, not a goal: badgecheck accepts one publicKey per issuer, so a JWS signed before a
    # rotation names a key the issuer no longer lists. The bridge re-signs every download, and the
    # retired key stays published (tests/web/test_badges_public.py). A fix upstream flips this.
    retired = run_badgecheck(badgecheck, [{"name": "retired", "input": signed_before_rotation}])["retired"]
    assert not retired["valid"] and "other than those authorized" in " ".join(retired["errors"])


def test_broken_assertions_fail_badgecheck(served: Served, badgecheck: Path) -> None:
    database, settings, publisher = served.database, served.settings, served.publisher
    wrong_recipient = award(database, settings, "welcome", learner="b0")
    set_badge_profile(database, "demo", "b0", public=False, actor="admin", email="alice@example.org")

    no_issued_on = award(database, settings, "welcome", learner="b1")
    document = publisher.assertion(award_record(database, no_issued_on))  # type: ignore[arg-type]
    del document["issuedOn"]
    served.overrides.serve(served.path(document["id"]), document)

    no_criteria = award(database, settings, "sprint", learner="b2")
    badge = publisher.badge_class("default", "sprint", "")
    assert badge is not None
    del badge["criteria"]
    served.overrides.serve(served.path(badge["id"]), badge)

    plaintext = award(database, settings, "welcome", learner="b3")
    document = publisher.assertion(award_record(database, plaintext))  # type: ignore[arg-type]
    document["recipient"]["identity"] = "b3@example.org"
    served.overrides.serve(served.path(document["id"]), document)

    expired = award(database, settings, "safety-certified", learner="b4")
    with database.write() as session:
        session.execute(
            update(Award)
            .where(Award.id == expired)
            .values(awarded_at=utcnow() - timedelta(days=400), expires_at=utcnow() - timedelta(hours=1))
        )

    revoked_hosted = award(database, settings, "welcome", learner="b5")
    ManualAwards(database, settings).revoke(award_id=revoked_hosted, actor="tests", reason="error")

    tampered = award(database, settings, "welcome", learner="b6", platform="moodle1")
    revoked_signed = [
        award(database, settings, b, learner="b7", platform="moodle1") for b in ("welcome", "sprint")
    ]
    signed_cases = [served.case(f"signed revoked {a}", a) for a in revoked_signed]  # JWS made before revoking
    for award_id in revoked_signed:
        ManualAwards(database, settings).revoke(award_id=award_id, actor="tests", reason="copied")
    header, payload, signature = served.case("x", tampered)["input"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["issuedOn"] = "2020-01-01T00:00:00+00:00"  # a valid document, but not the one signed
    changed = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    forged = ".".join([header, changed, signature])

    expectations = {
        "wrong recipient": "did not match",
        "missing issuedOn": "issuedOn",
        "BadgeClass without criteria": "criteria",
        "hashed identity in plain text": "must match known hash style",
        "expired": "expired",
        "revoked hosted (410, stripped)": "not present",
        "tampered signature": "failed verification",
        **{case["name"]: "has been revoked" for case in signed_cases},
    }
    cases = [
        served.case("wrong recipient", wrong_recipient, {"email": "mallory@example.org"}),
        served.case("missing issuedOn", no_issued_on),
        served.case("BadgeClass without criteria", no_criteria),
        served.case("hashed identity in plain text", plaintext),
        served.case("expired", expired),
        {"name": "revoked hosted (410, stripped)", "input": publisher.assertion_url(revoked_hosted)},
        {"name": "tampered signature", "input": forged},
        *signed_cases,
    ]
    reports = run_badgecheck(badgecheck, cases)
    for name, expected in expectations.items():
        assert not reports[name]["valid"], name
        assert any(expected in error for error in reports[name]["errors"]), (name, reports[name]["errors"])
