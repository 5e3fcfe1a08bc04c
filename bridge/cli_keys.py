"""``badge-bridge keys list|rotate``: the badge signing keys in ``<data_dir>/keys``.

Only key ids, algorithms and dates are printed; private keys never leave their files.
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
