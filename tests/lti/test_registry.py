"""Who may launch the tool: registrations and deployments, on the real database, each action audited."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bridge.db.engine import Database
from bridge.lti.dynamic_registration import RegisteredTool
from bridge.lti.launch import DatabaseToolConf
from bridge.lti.registry import (
    NewRegistration,
    list_registrations,
    register,
    set_status,
    store_dynamic_registration,
)
from bridge.lti.store import LaunchStore
from bridge.services.audit import audit_log
from bridge.services.errors import Conflict, Invalid, NotFound

PLATFORMS = {"moodle1", "canvas1"}
MOODLE = NewRegistration(
    platform="moodle1",
    issuer="https://moodle.example.edu",
    client_id="kM4vZ9pQ2xR7tLw",
    auth_login_url="https://moodle.example.edu/mod/lti/auth.php",
    auth_token_url="https://moodle.example.edu/mod/lti/token.php",
    key_set_url="https://moodle.example.edu/mod/lti/certs.php",
    deployment_ids=("3",),
)
CANVAS = NewRegistration(
    platform="canvas1",
    issuer="https://canvas.instructure.com",
    client_id="10000000000001",
    auth_login_url="https://sso.canvaslms.com/api/lti/authorize_redirect",
    auth_token_url="https://sso.canvaslms.com/login/oauth2/token",
    key_set_url="https://sso.canvaslms.com/api/lti/security/jwks",
    auth_audience="https://canvas.instructure.com/login/oauth2/token",
)
CANVAS_DYNAMIC = RegisteredTool(
    issuer="https://canvas.instructure.com",
    client_id="10000000000077",
    deployment_id="12653:4dde05e8ca1973bcca9bffc13e1548820eee93a3",
    auth_login_url="https://sso.canvaslms.com/api/lti/authorize_redirect",
    auth_token_url="https://sso.canvaslms.com/login/oauth2/token",
    auth_audience=None,
    key_set_url="https://sso.canvaslms.com/api/lti/security/jwks",
    product_family_code="canvas",
)


def add(database: Database, new: NewRegistration = MOODLE, **kwargs: object) -> int:
    return register(database, new, actor="admin", known_platforms=PLATFORMS, **kwargs).id  # type: ignore[arg-type]


def add_deployment(database: Database, registration_id: int, deployment_id: str, status: str) -> None:
    """A deployment first seen in a launch (pending), then decided as ``status``."""
    LaunchStore(database).add_pending_deployment(registration_id, deployment_id)
    if status != "pending":
        set_status(database, registration_id, status, actor="admin", deployment_id=deployment_id)


def deployments(database: Database, registration_id: int) -> dict[str, str]:
    (registration,) = [r for r in list_registrations(database) if r.id == registration_id]
    return {d.deployment_id: d.status for d in registration.deployments}


def test_a_registration_is_stored_active_with_its_deployments_active(database: Database) -> None:
    stored = register(database, MOODLE, actor="ms.admin", known_platforms=PLATFORMS)
    assert (stored.platform, stored.issuer, stored.client_id) == (
        "moodle1",
        "https://moodle.example.edu",
        "kM4vZ9pQ2xR7tLw",
    )
    assert (stored.status, stored.source, stored.auth_audience) == ("active", "manual", None)
    [deployment] = stored.deployments
    assert (deployment.deployment_id, deployment.status, deployment.decided_by) == ("3", "active", "ms.admin")
    [listed] = list_registrations(database)
    assert (listed.id, listed.client_id, listed.status) == (stored.id, stored.client_id, "active")
    assert [(d.deployment_id, d.status) for d in listed.deployments] == [("3", "active")]


def test_the_registration_returned_is_the_one_stored(database: Database) -> None:
    stored = register(database, MOODLE, actor="ms.admin", known_platforms=PLATFORMS)
    assert list_registrations(database) == [stored]


def test_a_registration_with_several_deployments_is_stored_with_all_of_them(database: Database) -> None:
    registration_id = add(database, replace(MOODLE, deployment_ids=("3", "4")))
    assert deployments(database, registration_id) == {"3": "active", "4": "active"}


def test_a_repeated_deployment_id_is_stored_once(database: Database) -> None:
    registration_id = add(database, replace(MOODLE, deployment_ids=("3", "3")))
    assert deployments(database, registration_id) == {"3": "active"}


def test_the_same_client_id_at_the_same_issuer_is_a_conflict(database: Database) -> None:
    add(database)
    with pytest.raises(Conflict, match="registered already") as refused:
        add(database, replace(MOODLE, platform="canvas1", deployment_ids=()))
    assert refused.value.code == "registration_exists"
    assert len(list_registrations(database)) == 1


def test_an_unknown_platform_is_invalid(database: Database) -> None:
    with pytest.raises(Invalid, match="'nowhere' is not configured") as refused:
        add(database, replace(MOODLE, platform="nowhere"))
    assert refused.value.code == "unknown_platform"
    assert list_registrations(database) == []


@pytest.mark.parametrize("field", ["auth_login_url", "auth_token_url", "key_set_url"])
def test_plain_http_urls_are_refused_naming_the_field(database: Database, field: str) -> None:
    with pytest.raises(Invalid, match=f"^{field}: expected an https:// URL") as refused:
        add(database, replace(MOODLE, **{field: "http://moodle.example.edu/mod/lti/x.php"}))
    assert refused.value.code == "invalid_registration"
    assert list_registrations(database) == []


@pytest.mark.parametrize(
    "url",
    ["ftp://moodle.example.edu/certs", "moodle.example.edu/certs", "http://127.0.0.1.example.org/certs"],
)
def test_other_schemes_and_look_alike_hosts_are_refused(database: Database, url: str) -> None:
    with pytest.raises(Invalid, match="key_set_url"):
        add(database, replace(MOODLE, key_set_url=url))


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost", "[::1]:9000"])
def test_plain_http_is_allowed_on_loopback_for_a_platform_on_the_same_machine(
    database: Database, host: str
) -> None:
    local = NewRegistration(
        "moodle1",
        f"http://{host}",
        "local",
        f"http://{host}/auth",
        f"http://{host}/token",
        f"http://{host}/jwks",
    )
    assert register(database, local, actor="admin", known_platforms=PLATFORMS).status == "active"


def test_one_issuer_with_two_client_ids_is_two_registrations_found_by_both(database: Database) -> None:
    # Hosted Canvas gives every tenant the issuer https://canvas.instructure.com.
    first = add(database, CANVAS)
    second = add(database, replace(CANVAS, client_id="10000000000002"))
    assert first != second
    store = LaunchStore(database)
    found = store.registration("https://canvas.instructure.com", "10000000000001")
    assert found is not None and found.id == first
    found = store.registration("https://canvas.instructure.com", "10000000000002")
    assert found is not None and found.id == second
    assert store.registration("https://canvas.instructure.com", "10000000000003") is None
    assert store.registration("https://other.instructure.com", "10000000000001") is None


def test_disable_and_approve_a_registration(database: Database) -> None:
    registration_id = add(database)
    disabled = set_status(database, registration_id, "disabled", actor="ms.admin")
    assert disabled.status == "disabled"
    assert [d.status for d in disabled.deployments] == ["active"]  # its deployments keep their own status
    assert set_status(database, registration_id, "active", actor="ms.admin").status == "active"


def test_disable_and_approve_one_deployment(database: Database) -> None:
    registration_id = add(database)
    add_deployment(database, registration_id, "4", "active")
    changed = set_status(database, registration_id, "disabled", actor="mr.ops", deployment_id="4")
    assert changed.status == "active"
    assert {d.deployment_id: (d.status, d.decided_by) for d in changed.deployments} == {
        "3": ("active", "admin"),
        "4": ("disabled", "mr.ops"),
    }
    assert changed.deployments[0].decided_by == "admin"  # the others are untouched
    set_status(database, registration_id, "active", actor="mr.ops", deployment_id="4")
    assert deployments(database, registration_id) == {"3": "active", "4": "active"}


def test_unknown_registrations_and_deployments_are_not_found(database: Database) -> None:
    registration_id = add(database)
    with pytest.raises(NotFound, match="no LTI registration 999") as refused:
        set_status(database, 999, "active", actor="admin")
    assert refused.value.code == "unknown_registration"
    with pytest.raises(NotFound, match="has no deployment '9'") as refused:
        set_status(database, registration_id, "disabled", actor="admin", deployment_id="9")
    assert refused.value.code == "unknown_deployment"
    assert deployments(database, registration_id) == {"3": "active"}


def test_approving_a_pending_registration_approves_its_pending_deployments_only(database: Database) -> None:
    registration_id = add(database, status="pending")
    add_deployment(database, registration_id, "4", "pending")
    add_deployment(database, registration_id, "5", "pending")
    assert deployments(database, registration_id) == {"3": "pending", "4": "pending", "5": "pending"}
    set_status(database, registration_id, "disabled", actor="admin", deployment_id="5")
    approved = set_status(database, registration_id, "active", actor="ms.admin")
    assert approved.status == "active"
    assert {d.deployment_id: (d.status, d.decided_by) for d in approved.deployments} == {
        "3": ("active", "ms.admin"),
        "4": ("active", "ms.admin"),
        "5": ("disabled", "admin"),  # refused before: approving the registration does not undo that
    }


def deployment_status(database: Database, deployment_id: str) -> str | None:
    """The status of a deployment of the Moodle registration (None: never seen)."""
    (registration,) = list_registrations(database)
    return next((d.status for d in registration.deployments if d.deployment_id == deployment_id), None)


def test_an_unknown_deployment_is_recorded_as_pending_exactly_once(database: Database) -> None:
    registration_id = add(database)
    assert deployment_status(database, "new-install") is None
    for _ in range(2):
        LaunchStore(database).add_pending_deployment(registration_id, "new-install")
    assert deployment_status(database, "new-install") == "pending"
    assert deployments(database, registration_id) == {"3": "active", "new-install": "pending"}
    (registration,) = list_registrations(database)
    pending = next(d for d in registration.deployments if d.deployment_id == "new-install")
    assert pending.decided_by is None


def test_a_known_deployment_reports_its_status(database: Database) -> None:
    registration_id = add(database)
    add_deployment(database, registration_id, "4", "disabled")
    assert deployment_status(database, "3") == "active"
    assert deployment_status(database, "4") == "disabled"


def test_a_pending_deployment_is_launchable_once_approved(database: Database) -> None:
    registration_id = add(database)
    LaunchStore(database).add_pending_deployment(registration_id, "new-install")
    set_status(database, registration_id, "active", actor="admin", deployment_id="new-install")
    assert deployment_status(database, "new-install") == "active"


def test_a_dynamic_registration_is_stored_pending_with_its_deployment(database: Database) -> None:
    stored = store_dynamic_registration(database, CANVAS_DYNAMIC, "canvas1")
    assert (stored.platform, stored.client_id, stored.status, stored.source, stored.product) == (
        "canvas1",
        "10000000000077",
        "pending",
        "dynamic",
        "canvas",
    )
    [deployment] = stored.deployments
    assert (deployment.deployment_id, deployment.status, deployment.decided_by) == (
        "12653:4dde05e8ca1973bcca9bffc13e1548820eee93a3",
        "pending",
        None,
    )


def test_a_dynamic_registration_without_a_deployment_waits_for_one(database: Database) -> None:
    # Canvas makes the deployment later, when an administrator installs the tool.
    stored = store_dynamic_registration(database, replace(CANVAS_DYNAMIC, deployment_id=None), "canvas1")
    assert stored.status == "pending" and stored.deployments == ()


def test_a_second_dynamic_registration_of_the_same_client_id_is_a_conflict(database: Database) -> None:
    store_dynamic_registration(database, CANVAS_DYNAMIC, "canvas1")
    with pytest.raises(Conflict):
        store_dynamic_registration(database, CANVAS_DYNAMIC, "canvas1")


def test_every_action_is_audited_with_who_did_it(database: Database) -> None:
    registration_id = register(database, MOODLE, actor="ms.admin", known_platforms=PLATFORMS).id
    set_status(database, registration_id, "disabled", actor="mr.ops")
    set_status(database, registration_id, "active", actor="mr.ops", deployment_id="3")
    dynamic_id = store_dynamic_registration(database, CANVAS_DYNAMIC, "canvas1").id
    entries = [(e.actor, e.action, e.details) for e in reversed(audit_log(database))]
    assert entries == [
        (
            "ms.admin",
            "lti.register",
            {"registration": registration_id, "issuer": MOODLE.issuer, "client_id": MOODLE.client_id},
        ),
        ("mr.ops", "lti.disable", {"registration": registration_id, "deployment": None}),
        ("mr.ops", "lti.approve", {"registration": registration_id, "deployment": "3"}),
        (
            "dynamic registration (canvas)",
            "lti.register",
            {
                "registration": dynamic_id,
                "issuer": CANVAS_DYNAMIC.issuer,
                "client_id": CANVAS_DYNAMIC.client_id,
            },
        ),
    ]


def test_refused_actions_leave_no_audit_entry(database: Database) -> None:
    registration_id = add(database)
    with pytest.raises(Conflict):
        add(database)
    with pytest.raises(NotFound):
        set_status(database, registration_id, "disabled", actor="admin", deployment_id="9")
    with pytest.raises(Invalid):
        add(database, replace(MOODLE, platform="nowhere"))
    assert [e.action for e in audit_log(database)] == ["lti.register"]


def test_pylti1p3_finds_only_approved_deployments_of_active_registrations(database: Database) -> None:
    registration_id = add(database)
    add_deployment(database, registration_id, "4", "pending")
    tool = DatabaseToolConf(LaunchStore(database), None, "")  # type: ignore[arg-type]  # keys not used here
    issuer, client_id = MOODLE.issuer, MOODLE.client_id
    found = tool.find_deployment_by_params(issuer, "3", client_id)
    assert found is not None and found.get_deployment_id() == "3"
    assert tool.find_deployment(issuer, "3") is not None  # the issuer's one registration
    assert tool.find_deployment_by_params(issuer, "4", client_id) is None  # waiting for approval
    assert tool.find_deployment_by_params(issuer, "99", client_id) is None  # never seen
    assert tool.find_deployment_by_params(issuer, "3", "another-client") is None
    set_status(database, registration_id, "disabled", actor="admin")
    assert tool.find_deployment_by_params(issuer, "3", client_id) is None
