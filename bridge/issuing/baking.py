"""Baked badge images: the badge's own picture carrying its assertion or credential.

PNG: one uncompressed ``iTXt`` chunk, keyword ``openbadges`` (OB 2.0: assertion JSON or JWS) or
``openbadgecredential`` (OB 3.0: the VC-JWT). SVG: an ``openbadges:assertion`` (OB 2.0, namespace
``http://openbadges.org``) or ``openbadges:credential`` (OB 3.0, ``https://purl.imsglobal.org/ob/v3p0``)
element right after the opening ``<svg>`` tag. (OB 2.0 baking §PNG/§SVG, OB 3.0 §5.3.)
"""

from __future__ import annotations

import io
import re
import struct
import xml.etree.ElementTree as ElementTree
import zlib
from typing import Literal
from xml.sax.saxutils import quoteattr

from PIL import Image
from PIL.PngImagePlugin import PngInfo

Keyword = Literal["openbadges", "openbadgecredential"]
OB2_SVG_NS = "http://openbadges.org"
OB3_SVG_NS = "https://purl.imsglobal.org/ob/v3p0"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SVG_ROOT = re.compile(r"<svg\b[^>]*?(/?)>", re.DOTALL)


def render_png(svg: bytes, size: int = 256) -> bytes:
    """The SVG rendered to a square PNG (cairo; no external resources are fetched: templates have none)."""
    import cairosvg  # loads the cairo library (~0.2 s): on the first render, not in every process start

    return cairosvg.svg2png(bytestring=svg, output_width=size, output_height=size, unsafe=False)


def bake_png(png: bytes, keyword: Keyword, text: str) -> bytes:
    """``png`` with ``text`` in one ``iTXt`` chunk named ``keyword`` (any earlier text chunk is dropped)."""
    image = Image.open(io.BytesIO(png))
    info = PngInfo()
    info.add_itxt(keyword, text, lang="", tkey="", zip=False)
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def png_text_chunks(png: bytes) -> list[tuple[str, str]]:
    """(keyword, text) of every uncompressed ``iTXt`` chunk, read straight from the chunk stream."""
    if not png.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    found, offset = [], len(_PNG_SIGNATURE)
    while offset + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[offset : offset + 8])
        data = png[offset + 8 : offset + 8 + length]
        if kind == b"iTXt":
            keyword, _, rest = data.partition(b"\x00")
            compressed, rest = rest[0], rest[2:]  # flag, then method
            _lang, _, rest = rest.partition(b"\x00")
            _translated, _, text = rest.partition(b"\x00")
            body = zlib.decompress(text) if compressed else text
            found.append((keyword.decode("latin-1"), body.decode("utf-8")))
        if kind == b"IEND":
            break
        offset += 12 + length
    return found


def unbake_png(png: bytes, keyword: Keyword) -> str | None:
    texts = [text for key, text in png_text_chunks(png) if key == keyword]
    if len(texts) > 1:
        raise ValueError(f"more than one {keyword!r} chunk: not a valid baked badge")
    return texts[0] if texts else None


def bake_svg(svg: str, *, version: Literal[2, 3], verify: str, body: str | None = None) -> str:
    """``svg`` with the badge element inserted right after the root tag.

    ``verify`` is the hosted assertion URL or a JWS/VC-JWT; ``body`` (OB 2.0 hosted) the assertion JSON
    as CDATA.
    """
    match = _SVG_ROOT.search(svg)
    if match is None:
        raise ValueError("no <svg> element")
    namespace, element = (OB2_SVG_NS, "assertion") if version == 2 else (OB3_SVG_NS, "credential")
    tag = match.group(0)
    opening = tag[: -len(match.group(1) + ">")]
    if "xmlns:openbadges=" not in opening:
        opening += f' xmlns:openbadges="{namespace}"'
    content = ""
    if body is not None:
        content = "<![CDATA[" + body.replace("]]>", "]]]]><![CDATA[>") + "]]>"
    inserted = f"<openbadges:{element} verify={quoteattr(verify)}>{content}</openbadges:{element}>"
    closing = "</svg>" if match.group(1) else ""  # a self-closing root is opened to hold the element
    return svg[: match.start()] + f"{opening}>{inserted}{closing}" + svg[match.end() :]


def unbake_svg(svg: str, version: Literal[2, 3]) -> tuple[str, str | None]:
    """(``verify`` attribute, body text or None) of the badge element; ValueError when there is none."""
    namespace, element = (OB2_SVG_NS, "assertion") if version == 2 else (OB3_SVG_NS, "credential")
    root = ElementTree.fromstring(svg)
    found = root.findall(f"{{{namespace}}}{element}")
    if len(found) != 1:
        raise ValueError(f"expected one openbadges:{element} element, found {len(found)}")
    if next(iter(root)) is not found[0]:
        raise ValueError(f"openbadges:{element} must be the first child of <svg>")
    text = (found[0].text or "").strip() or None
    return found[0].attrib["verify"], text
