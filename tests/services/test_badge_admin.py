"""``BadgeAdmin`` (badges created and updated over the API and the CLI): an image name the file system
cannot look up is an ``Invalid`` naming ``image`` (a 422), never an OSError."""

from __future__ import annotations

import pytest

from bridge.db.engine import Database
from bridge.services.badge_admin import BadgeAdmin
from bridge.services.errors import Invalid
from bridge.settings import Settings
from tests.web.test_api_rules import a_badge

BAD_IMAGES = ["a" * 300 + ".svg", "é" * 128 + ".svg", "nul\x00.svg"]


@pytest.mark.parametrize("image", BAD_IMAGES)
def test_creating_or_updating_with_an_image_name_too_long_or_with_nul_is_invalid(
    database: Database, settings: Settings, image: str
) -> None:
    admin = BadgeAdmin(database, settings)
    with pytest.raises(Invalid, match=r"^image: "):
        admin.create(a_badge(image=image), "tests")
    admin.create(a_badge(), "tests")
    with pytest.raises(Invalid, match=r"^image: "):
        admin.update("three-logins", a_badge(image=image), "tests")


def test_an_image_that_is_not_beside_the_templates_is_invalid(database: Database, settings: Settings) -> None:
    admin = BadgeAdmin(database, settings)
    with pytest.raises(Invalid, match=r"^image: 'missing.svg' is not a file in the badge templates folder"):
        admin.create(a_badge(image="missing.svg"), "tests")
