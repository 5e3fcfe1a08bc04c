"""``badge-bridge keys list|rotate``: the badge signing keys in ``<data_dir>/keys``; and
``badge-bridge api-keys create|list|revoke``: the REST API's keys.

Only key ids, algorithms and dates are printed; private keys never leave their files. An API key is
printed once, when made, and kept only as its SHA-256.
"""

from __future__ import annotations

import click

from bridge.cli import _Context, pass_context


@click.group()
def keys() -> None:
    """Badge signing keys (published as JWKS at /ob/jwks.json)."""


@keys.command("list")
@pass_context
def keys_list(ctx: _Context) -> None:
    """Every key, newest first: id, algorithm, created, active or retired."""
    from bridge.issuing.keys import KeyRing

    for key in KeyRing.open(ctx.settings.data_dir).all_keys():
        state = "active" if key.active else "retired"
        click.echo(f"{key.kid}\t{key.alg}\t{key.created_at:%Y-%m-%d %H:%M}\t{state}")


@keys.command("rotate")
@pass_context
def keys_rotate(ctx: _Context) -> None:
    """Make a new RSA and Ed25519 key; the old ones stop signing but stay published, so badges
    signed with them still verify. Running servers pick the new keys up on their next request."""
    from bridge.issuing.keys import KeyRing

    for key in KeyRing.open(ctx.settings.data_dir).rotate():
        click.echo(f"new {key.alg} key {key.kid}")


# ``badge-bridge api-keys create|list|revoke``: the REST API's keys, with their scope, platform and expiry
# (the group is bridge/cli.py's ``api-keys``).
from bridge.cli import api_keys as _api_keys  # noqa: E402


@_api_keys.command("create")
@click.argument("name")
@click.option(
    "--scope",
    type=click.Choice(["read", "write", "admin"]),
    required=True,
    help="read: GET only; write: also events, awards, approvals, learner settings; admin: also badges, LTI",
)
@click.option("--platform", help="limit the key to this platform's learners, events and awards")
@click.option("--expires-in", "expires_in", type=click.IntRange(min=1), metavar="DAYS", help="default: never")
@pass_context
def api_keys_create(
    ctx: _Context, name: str, scope: str, platform: str | None, expires_in: int | None
) -> None:
    """Create a key; it is printed once and stored only as its SHA-256."""
    from datetime import timedelta

    from bridge.clock import utcnow
    from bridge.services.api_keys import ApiKeyExists, create_key

    if platform is not None and ctx.settings.platform(platform) is None:
        raise click.BadParameter(f"{platform!r} is not a configured platform", param_hint="--platform")
    expires_at = utcnow() + timedelta(days=expires_in) if expires_in else None
    try:
        key = create_key(ctx.database(), name, scope=scope, platform=platform, expires_at=expires_at)
    except ApiKeyExists as error:
        raise click.ClickException(str(error)) from None
    click.echo(key)


@_api_keys.command("list")
@pass_context
def api_keys_list(ctx: _Context) -> None:
    """Every key: name, created, scope, platform, expiry, last use (to the minute) and state."""
    from bridge.clock import utcnow
    from bridge.services.api_keys import list_keys

    now = utcnow()
    for key in list_keys(ctx.database()):
        expires = f"expires {key.expires_at:%Y-%m-%d %H:%M}" if key.expires_at else "expires never"
        used = f"last used {key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never used"
        if key.revoked_at:
            state = f"revoked {key.revoked_at:%Y-%m-%d}"
        else:
            state = "expired" if key.expires_at and key.expires_at <= now else "active"
        platform = f"platform {key.platform}" if key.platform else "every platform"
        fields = [
            key.name,
            f"created {key.created_at:%Y-%m-%d}",
            f"scope {key.scope}",
            platform,
            expires,
            used,
        ]
        click.echo("\t".join([*fields, state]))


@_api_keys.command("revoke")
@click.argument("name")
@pass_context
def api_keys_revoke(ctx: _Context, name: str) -> None:
    from bridge.services.api_keys import revoke_key

    if not revoke_key(ctx.database(templates=False), name):
        raise click.ClickException(f"no active API key named {name!r}")
    click.echo(f"revoked {name}")
