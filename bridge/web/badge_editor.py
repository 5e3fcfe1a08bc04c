"""The badge editor's checks, apart from its pages: a template document checked as ``badge-bridge badges
check`` checks a file (the same messages: file: key: reason), an uploaded SVG image checked before it is
stored, and a stored badge written back as the TOML its template file would hold."""

from __future__ import annotations

import json
import os
import re
import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from bridge.domain.templates import TemplateError, check_prerequisites, parse_template
from bridge.issuing.baking import render_png
from bridge.services.badge_admin import list_badges
from bridge.services.badges import shipped_templates_dir
from bridge.web.context import services
from bridge.web.strings import text

MAX_TEMPLATE_CHARS = 65_536
MAX_IMAGE_BYTES = 256 * 1024
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_NAMED = re.compile(r"^id\s*=\s*[\"']([a-z0-9][a-z0-9_-]{0,63})[\"']\s*$", re.MULTILINE)


def check_template(
    document_text: str, editing: str | None, *, image_chosen: bool = False
) -> tuple[dict[str, Any] | None, list[TemplateError]]:
    """The document and its problems, as ``badges check`` reports a template file (``<id>.toml``), with
    what a file's place tells there checked against the badges stored: the id, the image, prerequisites."""
    settings = services().settings
    named = _NAMED.search(document_text)  # names the file even when the TOML does not parse
    source = source_of(editing, {"id": named.group(1)} if named else None)
    if len(document_text) > MAX_TEMPLATE_CHARS:
        return None, [TemplateError(source, "toml", text("admin.problem.too_long", size=MAX_TEMPLATE_CHARS))]
    try:
        raw = tomllib.loads(document_text)
    except tomllib.TOMLDecodeError as error:
        return None, [TemplateError(source, "toml", str(error))]
    source = source_of(editing, raw)
    try:
        template = parse_template(raw, source, settings.track_event_types, settings.badge_level_threshold)
    except TemplateError as error:
        return raw, [error]
    problems: list[TemplateError] = []
    stored = {b.id: b for b in list_badges(services().database)}
    if editing is not None and template.id != editing:
        reason = f"the document says {template.id!r} but the badge is {editing!r}"
        problems.append(TemplateError(source, "id", reason))
    elif editing is None and template.id in stored:
        problems.append(TemplateError(source, "id", text("admin.problem.id_taken", id=template.id)))
    images = settings.badge_templates_dir
    if image_chosen and images is None:
        problems.append(TemplateError(source, "image", text("admin.problem.no_upload_folder")))
    elif image_chosen and not template.image.lower().endswith(".svg"):
        problems.append(TemplateError(source, "image", text("admin.problem.not_svg_name")))
    elif not image_chosen and not _image_exists(template.image):
        problems.append(TemplateError(source, "image", f"file {template.image!r} not found beside it"))
    # The stored badges stand in for the other files: the same check, the same messages.
    others = [replace(template, id=i, prerequisites=tuple(b.prerequisites)) for i, b in stored.items()]
    others = [t for t in others if t.id != template.id]
    sources = {t.id: f"{t.id}.toml" for t in others} | {template.id: source}
    problems += [e for e in check_prerequisites([*others, template], sources) if e.source == source]
    return raw, problems


def source_of(editing: str | None, raw: Mapping[str, Any] | None) -> str:
    """The file the template would be, as ``badges check`` names it."""
    found = editing or (raw or {}).get("id")
    return f"{found}.toml" if isinstance(found, str) and _ID.fullmatch(found) else text("admin.new_source")


def problem_line(problem: TemplateError) -> str:
    return f"{problem.source}: {problem.key}: {problem.reason}"


def summary(problems: list[TemplateError]) -> str:
    return text("admin.editor.problems", count=len(problems)) if problems else text("admin.editor.valid")


def _image_exists(name: str) -> bool:
    """Is ``name`` a file where the badge service looks for images (as BadgeAdmin checks)."""
    directory = services().settings.badge_templates_dir or shipped_templates_dir()
    try:
        path = (directory / name).resolve()
        return path.is_file() and path.parent == directory.resolve()
    except OSError:
        return False


_SVG = "{http://www.w3.org/2000/svg}svg"
_ACTIVE = {"script", "foreignObject", "iframe", "embed", "object", "handler", "listener"}
_OUTSIDE = re.compile(r"url\(\s*['\"]?\s*(?!#|data:)|@import", re.IGNORECASE)


def svg_problem(data: bytes) -> str | None:
    """Why ``data`` may not be a badge's image, or None. The image is served as SVG from the tool's own
    origin and drawn by cairo: nothing in it may run, fetch another file or declare entities."""
    if not data:
        return text("admin.image.empty")
    if len(data) > MAX_IMAGE_BYTES:
        return text("admin.image.too_large", size=MAX_IMAGE_BYTES // 1024)
    try:
        document = data.decode("utf-8")
    except UnicodeDecodeError:
        return text("admin.image.not_utf8")
    if re.search(r"<!\s*(DOCTYPE|ENTITY)", document, re.IGNORECASE):
        return text("admin.image.doctype")
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as error:
        return text("admin.image.not_xml", error=error)
    if root.tag != _SVG:
        return text("admin.image.not_svg")
    for element in root.iter():
        name = str(element.tag).rpartition("}")[2]
        if name in _ACTIVE:
            return text("admin.image.active", element=name)
        values = list(element.attrib.items()) + (
            [("", element.text)] if name == "style" and element.text else []
        )
        for attribute, value in values:
            local = attribute.rpartition("}")[2]
            if local.lower().startswith("on") or "javascript:" in re.sub(r"\s", "", value).lower():
                return text("admin.image.script")
            if (local == "href" and not value.startswith(("#", "data:image/"))) or _OUTSIDE.search(value):
                return text("admin.image.outside")
    try:
        render_png(data, size=64)
    except Exception as error:  # cairo's errors have no common type; any means it cannot be drawn
        return text("admin.image.undrawable", error=error)
    return None


def store_image(directory: Path | None, name: str, data: bytes) -> None:
    """Write the image in one step: a badge page never reads half a file."""
    assert directory is not None  # check_template refused the upload otherwise
    temporary = directory / f".upload-{uuid.uuid4().hex}.svg"
    temporary.write_bytes(data)
    os.replace(temporary, directory / name)


def toml_text(document: Mapping[str, Any]) -> str:
    """A badge document as TOML, written as the template files are: keys, then the tables."""
    lines: list[str] = []
    _toml_table(lines, "", document)
    return "\n".join(lines).strip() + "\n"


def _toml_table(lines: list[str], path: str, table: Mapping[str, Any], *, array: bool = False) -> None:
    def is_table(value: Any) -> bool:
        return isinstance(value, Mapping) or (
            isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)
        )

    scalars = [(k, v) for k, v in table.items() if v is not None and not is_table(v)]
    if path and (array or scalars):
        lines += ["", f"[[{path}]]" if array else f"[{path}]"]
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in scalars]
    for key, value in table.items():
        if not is_table(value):
            continue
        inner = f"{path}.{_toml_key(key)}" if path else _toml_key(key)
        for item in value if isinstance(value, list) else [value]:
            _toml_table(lines, inner, item, array=isinstance(value, list))


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return _toml_string(str(value))


def _toml_string(value: str) -> str:
    # JSON's escapes are TOML's, but for DEL, which TOML wants escaped too.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
