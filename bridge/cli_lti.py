"""``badge-bridge lti register|list|approve|disable|keys|rotate-key``: who may launch the LTI tool.

The same actions as the admin REST API (``/api/v1/lti/registrations``), for operators at a shell.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from bridge.cli import _Context, pass_context
from bridge.cli_rules import _refusals


def _show(registration: Any) -> None:
    click.echo(
        f"{registration.id}\t{registration.status}\t{registration.platform}\t{registration.issuer}\t"
        f"client {registration.client_id}\t{registration.source}"
    )
    for deployment in registration.deployments:
        click.echo(f"\tdeployment {deployment.deployment_id}\t{deployment.status}")


@click.group()
def lti() -> None:
    """The LTI 1.3 tool: registrations of platforms, their deployments, the tool's key."""


@lti.command("register")
@click.argument("platform")
@click.option(
    "--issuer",
    required=True,
    help="the platform's issuer (Moodle: its site URL; Canvas: https://canvas.instructure.com)",
)
@click.option("--client-id", required=True, help="the client id the platform gave the tool")
@click.option("--login-url", required=True, help="the platform's OIDC authentication request URL")
@click.option("--token-url", required=True, help="the platform's OAuth 2 access token URL")
@click.option("--jwks-url", required=True, help="the platform's public keyset URL")
@click.option("--audience", help="the token endpoint's audience, when it is not the token URL")
@click.option("--deployment", "deployments", multiple=True, help="a deployment id to accept (repeatable)")
@click.option("--as", "actor", default="cli", show_default=True, help="who is acting, for the audit log")
@pass_context
def lti_register(
    ctx: _Context,
    platform: str,
    issuer: str,
    client_id: str,
    login_url: str,
    token_url: str,
    jwks_url: str,
    audience: str | None,
    deployments: tuple[str, ...],
    actor: str,
) -> None:
    """Register the tool with a platform (bridge PLATFORM id), active at once."""
    from bridge.lti.registry import NewRegistration, register

    new = NewRegistration(platform, issuer, client_id, login_url, token_url, jwks_url, audience, deployments)
    with _refusals():
        registration = register(
            ctx.database(), new, actor=actor, known_platforms={p.id for p in ctx.settings.platforms}
        )
    _show(registration)


@lti.command("list")
@pass_context
def lti_list(ctx: _Context) -> None:
    """Every registration with its deployments and their status (active, pending, disabled)."""
    from bridge.lti.registry import list_registrations

    for registration in list_registrations(ctx.database()):
        _show(registration)


def _decide(status: str) -> Callable[..., None]:
    def decide(ctx: _Context, registration_id: int, deployment: str | None, actor: str) -> None:
        from bridge.lti.registry import set_status

        with _refusals():
            _show(set_status(ctx.database(), registration_id, status, actor=actor, deployment_id=deployment))

    return decide


def _decision_command(name: str, status: str, help_text: str) -> click.Command:
    command = click.argument("registration_id", type=int)(_decide(status))
    command = click.option("--deployment", help="only this deployment of the registration")(command)
    command = click.option("--as", "actor", default="cli", show_default=True, help="who is acting")(command)
    return lti.command(name, help=help_text)(pass_context(command))


_decision_command(
    "approve", "active", "Approve a registration (and its pending deployments), or one deployment."
)
_decision_command(
    "disable", "disabled", "Disable a registration or one deployment: its launches are refused."
)


@lti.command("keys")
@pass_context
def lti_keys(ctx: _Context) -> None:
    """The tool's keys (published at /lti/jwks.json), newest first."""
    from bridge.issuing.keys import KeyRing

    ring = KeyRing.open_directory(ctx.settings.data_dir / "keys" / "lti", ("RS256",))
    for key in ring.all_keys():
        state = (
            "active" if key.active else f"retired {key.retired_at:%Y-%m-%d}" if key.retired_at else "retired"
        )
        click.echo(f"{key.kid}\t{key.alg}\t{key.created_at:%Y-%m-%d %H:%M}\t{state}")


@lti.command("rotate-key")
@pass_context
def lti_rotate_key(ctx: _Context) -> None:
    """Make a new tool key; the old one stays published for lti.retired_key_days."""
    from bridge.issuing.keys import KeyRing

    ring = KeyRing.open_directory(ctx.settings.data_dir / "keys" / "lti", ("RS256",))
    for key in ring.rotate():
        click.echo(f"new {key.alg} key {key.kid}")


@lti.command("invite")
@click.argument("platform")
@pass_context
def lti_invite(ctx: _Context, platform: str) -> None:
    """Print the Dynamic Registration URL to give a Moodle or Canvas administrator for PLATFORM.

    It works for a week; a registration made with it waits for `badge-bridge lti approve`."""
    from bridge.lti.tool import INVITE_DAYS, LtiTool

    if ctx.settings.platform(platform) is None:
        raise click.ClickException(f"platform {platform!r} is not configured")
    click.echo(LtiTool(ctx.database(), ctx.settings).registration_invite(platform))
    click.echo(f"(valid for {INVITE_DAYS} days)", err=True)


@lti.command("grade-sync")
@click.argument("registration_id", type=int)
@click.argument("context_id")
@click.option("--on/--off", "enabled", required=True, help="send badge points to the course's gradebook")
@click.option("--as", "actor", default="cli", show_default=True, help="who is acting, for the audit log")
@pass_context
def lti_grade_sync(ctx: _Context, registration_id: int, context_id: str, enabled: bool, actor: str) -> None:
    """Turn a course's "Badge points" gradebook column on or off (off by default)."""
    from bridge.lti.grades import set_grade_sync

    with _refusals():
        sync = set_grade_sync(ctx.database(), registration_id, context_id, enabled, actor)
    click.echo(f"course {sync.course}: grade sync {'on' if sync.enabled else 'off'}")


@lti.command("push-grades")
@click.option("--registration", "registration_id", type=int, help="only this registration's courses")
@pass_context
def lti_push_grades(ctx: _Context, registration_id: int | None) -> None:
    """Send changed badge points to gradebooks now (the scheduler does it every minute)."""
    from bridge.lti.jobs import lti_services

    result = lti_services(ctx.database(), ctx.settings).grades.push(registration_id)
    click.echo(
        f"courses {result.contexts}, posted {result.posted}, unchanged {result.unchanged}, "
        f"refused {result.refused}, failed {result.failed}"
    )
    if result.failed:
        raise SystemExit(1)


@lti.command("roster")
@click.argument("registration_id", type=int)
@click.argument("context_id")
@pass_context
def lti_roster(ctx: _Context, registration_id: int, context_id: str) -> None:
    """Read a course's roster (names, emails) from the platform now."""
    from bridge.lti.jobs import lti_services
    from connectors.http import LmsError

    rosters = lti_services(ctx.database(), ctx.settings).rosters
    try:
        with _refusals():
            result = rosters.refresh(registration_id, context_id)
    except LmsError as error:
        raise click.ClickException(f"the platform refused: {error}") from None
    finally:
        rosters.close()
    click.echo(f"members {result.members}, learners {result.learners_updated}, skipped {result.skipped}")
