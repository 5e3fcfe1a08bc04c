"""Every sentence the LMS pages show, in one place, ready for translation (English shipped).

A string with a count has its plural forms (``one``, ``other``, as CLDR names them); :func:`text` picks
the form, so "1 sign-in" and "2 sign-ins" come from one entry and no template builds a plural itself.
"""

from __future__ import annotations

from typing import Any

STRINGS: dict[str, str | dict[str, str]] = {
    "page.title": "Badges",
    "learner.heading": "Your badges",
    "learner.heading_named": "{name}'s badges",
    "learner.earned": "Earned",
    "learner.none_earned": "No badges yet. The badges in progress below say what is left to do.",
    "learner.earned_on": "Earned on {date}",
    "learner.tier": "{tier} tier",
    "learner.view": "View the badge",
    "learner.download": "Download the badge image",
    "learner.credential": "Download the credential",
    "learner.linkedin": "Add to LinkedIn profile",
    "learner.in_progress": "In progress",
    "learner.none_in_progress": "Nothing in progress.",
    "learner.next_tier": {
        "one": "{remaining} more for {tier}.",
        "other": "{remaining} more for {tier}.",
    },
    "learner.pending": "Waiting for your instructor's approval.",
    "learner.locked": "Locked",
    "learner.locked_by": {"one": "Earn {badges} first.", "other": "Earn {badges} first."},
    "board.heading": "Leaderboard",
    "board.week": "This week",
    "board.month": "This month",
    "board.all": "All time",
    "board.points": {"one": "{count} point", "other": "{count} points"},
    "board.empty": "Nobody is on the leaderboard yet.",
    "board.you": "You are number {rank} of {total}.",
    "board.you_unranked": "You are not on this leaderboard yet.",
    "choices.heading": "Your choices",
    "choices.opt_out": "Hide my name on leaderboards",
    "choices.opt_in": "Show my name on leaderboards",
    "choices.hidden": "Your name is hidden on leaderboards: others see a pseudonym.",
    "choices.profile_on": "Make my badge profile public",
    "choices.profile_off": "Make my badge profile private",
    "choices.profile_url": "Your public badge profile:",
    "toast.earned": "You earned {badge}!",
    "toast.earned_tier": "You earned {badge} ({tier})!",
    "toast.close": "Close",
}


def text(key: str, count: int | float | None = None, **values: Any) -> str:
    """The sentence ``key`` with ``values`` filled in; with ``count``, its plural form."""
    entry = STRINGS[key]
    if isinstance(entry, dict):
        entry = entry["one" if count == 1 else "other"]
    return entry.format(count=count, **values)
