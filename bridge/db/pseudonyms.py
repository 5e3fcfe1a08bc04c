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
    """Random, not derived from the learner's id, so it reveals nothing about who they are.

    One draw from the system's generator for all three parts: a batch creates many learners at once.
    """
    drawn = secrets.randbelow(len(_ADJECTIVES) * len(_ANIMALS) * 10_000)
    drawn, number = divmod(drawn, 10_000)
    adjective, animal = divmod(drawn, len(_ANIMALS))
    return f"{_ADJECTIVES[adjective]} {_ANIMALS[animal]} {number:04d}"
