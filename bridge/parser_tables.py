"""rule-engine's parser tables, kept between starts in the data directory.

rule-engine builds its parser with PLY when it is imported, and in its non-debug mode PLY computes the
LALR tables every time (~0.4 s, a fifth of the service's start) because it is told not to write them.
PLY first looks for finished tables in the module ``rule_engine.parser.parsetab`` and uses them only if
their signature equals the one it computes from the grammar; otherwise it builds them as usual. So a
start that finds our saved tables imports rule-engine in ~0.1 s, and tables from another rule-engine
version, or a damaged file, cost only the usual build.

The tables are saved as JSON (data, never code to run) by PLY's own writer: on the first start the
grammar is built once more into a temporary directory and PLY's output is read back from there.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import tempfile
import types
from importlib.metadata import version
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_TABLES_MODULE = "rule_engine.parser.parsetab"  # where rule-engine's PLY looks for finished tables


def tables_file(data_dir: Path) -> Path:
    return data_dir / "cache" / f"rule-engine-{version('rule-engine')}-parser-tables.json"


def import_rule_engine(data_dir: Path) -> None:
    """Import rule-engine with the tables saved under ``data_dir``; save them there if there are none."""
    if "rule_engine" in sys.modules:
        return
    path = tables_file(data_dir)
    tables = _read(path)
    if tables is not None:
        module = types.ModuleType(_TABLES_MODULE)
        module.__dict__.update(tables)
        sys.modules[_TABLES_MODULE] = module
        try:
            importlib.import_module("rule_engine")  # PLY takes the tables only if their signature matches
        finally:
            del sys.modules[_TABLES_MODULE]
        return
    importlib.import_module("rule_engine")
    try:
        _save(path, _written_by_ply())
    except Exception as error:  # a read-only data directory, or a rule-engine that moved its parser
        log.warning("parser_tables.not_saved", extra={"path": str(path), "error": str(error)})


def _read(path: Path) -> dict[str, Any] | None:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        return {
            "_tabversion": saved["tabversion"],
            "_lr_method": saved["method"],
            "_lr_signature": saved["signature"],
            "_lr_action": {int(state): moves for state, moves in saved["action"].items()},
            "_lr_goto": {int(state): moves for state, moves in saved["goto"].items()},
            "_lr_productions": [tuple(production) for production in saved["productions"]],
        }
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        log.warning("parser_tables.unreadable", extra={"path": str(path), "error": str(error)})
        return None


def _written_by_ply() -> dict[str, Any]:
    from rule_engine._vendor.ply import yacc
    from rule_engine.engine import Rule

    with tempfile.TemporaryDirectory() as directory:
        yacc.yacc(
            module=Rule.parser, debug=False, write_tables=True, tabmodule=_TABLES_MODULE, outputdir=directory
        )
        namespace: dict[str, Any] = {}
        source = Path(directory, "parsetab.py").read_text(encoding="utf-8")
        exec(compile(source, "parsetab.py", "exec"), namespace)  # PLY's output, written just now
    return {
        "tabversion": namespace["_tabversion"],
        "method": namespace["_lr_method"],
        "signature": namespace["_lr_signature"],
        "action": namespace["_lr_action"],
        "goto": namespace["_lr_goto"],
        "productions": namespace["_lr_productions"],
    }


def _save(path: Path, tables: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own: processes starting at once (containers sharing the volume are all pid 1) each
    # write their own file, and the last rename wins; a reader sees one whole file or the other.
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(tables, file)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
