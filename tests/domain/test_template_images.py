"""A template's ``image`` is the file name of an image beside it: one name, no folders, at most 255 bytes
(what file systems allow), no NUL or control characters. Anything else is refused naming ``image``, before
any file is looked for (a name too long for the file system made that look-up fail with an OSError)."""

from __future__ import annotations

import pytest

from bridge.domain.templates import TemplateError
from tests.domain.test_templates import parse, template


@pytest.mark.parametrize(
    "image",
    [
        "a" * 300 + ".svg",
        "é" * 128 + ".svg",  # 260 bytes in UTF-8, though 132 characters
        "nul\x00.svg",
        "line\nbreak.svg",
        "\ud800.svg",  # a lone surrogate: no file system encoding has it
        "../welcome.svg",
        "images/welcome.svg",
        "images\\welcome.svg",
        "..",
        ".",
    ],
)
def test_an_image_that_is_not_a_file_name_is_refused_naming_image(image: str) -> None:
    with pytest.raises(TemplateError) as refused:
        parse(template(image=image))
    assert refused.value.key == "image"
    assert "file name" in refused.value.reason


@pytest.mark.parametrize("image", ["welcome.svg", "a" * 251 + ".svg", "badge ünï.svg", ".hidden.svg"])
def test_a_file_name_up_to_255_bytes_is_accepted(image: str) -> None:
    assert parse(template(image=image)).image == image
