"""``POST /api/v1/badges`` and ``PUT /api/v1/badges/<id>`` with an image name no file can have: a 422
naming ``image`` (it was a 500: the file system refused to look the name up)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.web.test_api_rules import a_badge, assert_error


@pytest.mark.parametrize("image", ["a" * 300 + ".svg", "nul\x00.svg", "../pyproject.toml"])
def test_an_image_name_no_file_can_have_is_a_422_naming_image(
    client: FlaskClient, auth: dict[str, str], image: str
) -> None:
    created = client.post("/api/v1/badges", json=a_badge(image=image), headers=auth)
    assert_error(created, 422, "invalid_badge", "image:")
    assert client.post("/api/v1/badges", json=a_badge(), headers=auth).status_code == 201
    updated = client.put("/api/v1/badges/three-logins", json=a_badge(image=image), headers=auth)
    assert_error(updated, 422, "invalid_badge", "image:")
