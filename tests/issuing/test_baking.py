"""Baking: one iTXt chunk (PNG) or one element after <svg> (SVG); unbaking gives back what went in."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from bridge.issuing.baking import (
    OB2_SVG_NS,
    OB3_SVG_NS,
    bake_png,
    bake_svg,
    png_text_chunks,
    render_png,
    unbake_png,
    unbake_svg,
)
from bridge.services.badges import shipped_templates_dir

SVG = (shipped_templates_dir() / "welcome.svg").read_bytes()


@pytest.fixture(scope="module")
def png() -> bytes:
    return render_png(SVG)


def test_the_template_svg_renders_to_a_256_pixel_png(png: bytes) -> None:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert Image.open(io.BytesIO(png)).size == (256, 256)


@pytest.mark.parametrize("keyword", ["openbadges", "openbadgecredential"])
def test_a_baked_png_holds_exactly_one_uncompressed_itxt_chunk(png: bytes, keyword: str) -> None:
    text = json.dumps({"id": "https://x/a/1", "name": "Ünïcode ✓"})
    baked = bake_png(png, keyword, text)  # type: ignore[arg-type]
    assert png_text_chunks(baked) == [(keyword, text)]
    assert unbake_png(baked, keyword) == text  # type: ignore[arg-type]
    assert Image.open(io.BytesIO(baked)).size == (256, 256)  # still the same picture


def test_baking_again_replaces_the_earlier_chunk(png: bytes) -> None:
    twice = bake_png(bake_png(png, "openbadges", "first"), "openbadges", "second")
    assert unbake_png(twice, "openbadges") == "second"


def test_an_unbaked_png_has_no_badge(png: bytes) -> None:
    assert unbake_png(png, "openbadges") is None
    with pytest.raises(ValueError, match="not a PNG"):
        png_text_chunks(b"GIF89a")


def test_an_ob2_svg_has_the_assertion_element_first_with_its_json(png: bytes) -> None:
    body = json.dumps({"id": "https://x/a/1", "narrative": "tricky ]]> text"})
    baked = bake_svg(SVG.decode(), version=2, verify="https://x/a/1", body=body)
    assert f'xmlns:openbadges="{OB2_SVG_NS}"' in baked
    assert unbake_svg(baked, 2) == ("https://x/a/1", body)
    assert baked.count("<openbadges:assertion") == 1


def test_an_ob3_svg_carries_the_credential_jwt() -> None:
    baked = bake_svg(SVG.decode(), version=3, verify="aaa.bbb.ccc")
    assert f'xmlns:openbadges="{OB3_SVG_NS}"' in baked
    assert unbake_svg(baked, 3) == ("aaa.bbb.ccc", None)
    with pytest.raises(ValueError, match="expected one"):
        unbake_svg(baked, 2)


def test_a_self_closing_svg_root_is_opened_to_hold_the_element() -> None:
    baked = bake_svg(
        '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', version=3, verify="t"
    )
    assert unbake_svg(baked, 3) == ("t", None)
