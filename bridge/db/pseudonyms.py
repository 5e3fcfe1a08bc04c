"""Pseudonyms shown for learners on leaderboards when their names must not be."""

from __future__ import annotations

import secrets

_ADJECTIVES = (
    "Amber", "Brave", "Calm", "Clever", "Curious", "Eager", "Gentle", "Keen", "Lively", "Lucky",
    "Mellow", "Nimble", "Quiet", "Rapid", "Sunny", "Swift", "Steady", "Witty", "Bold", "Bright",
)  # fmt: skip
_ANIMALS = (
    "Badger", "Crane", "Dolphin", "Falcon", "Fox", "Heron", "Ibis", "Koala", "Lynx", "Otter",
    "Owl", "Panda", "Puffin", "Raven", "Seal", "Swan", "Tiger", "Wolf", "Wren", "Yak",
)  # fmt: skip


def new_pseudonym() -> str:
    """Random, not derived from the learner's id, so it reveals nothing about who they are."""
    return f"{secrets.choice(_ADJECTIVES)} {secrets.choice(_ANIMALS)} {secrets.randbelow(10_000):04d}"
