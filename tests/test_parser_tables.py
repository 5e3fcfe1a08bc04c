"""rule-engine's parser tables are saved in the data directory on the first start and read on the next.

Each case runs in a fresh interpreter: rule-engine builds its parser once per process, on import.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from bridge.parser_tables import tables_file

# Counts the LALR table builds PLY does while rule-engine is imported, then checks the parser works.
_START = """
import importlib.abc
import importlib.util
import sys
from pathlib import Path

builds = []


class CountTableBuilds(importlib.abc.MetaPathFinder):
    # Wraps PLY's table builder as rule-engine's copy of PLY is imported, without importing it first.
    def find_spec(self, name, path, target=None):
        if name != "rule_engine._vendor.ply.yacc":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            build = module.LRGeneratedTable.__init__

            def counted(self, *args, **kwargs):
                builds.append(1)
                build(self, *args, **kwargs)

            module.LRGeneratedTable.__init__ = counted

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, CountTableBuilds())

from bridge.parser_tables import import_rule_engine

import_rule_engine(Path(sys.argv[1]))
import rule_engine

rule = rule_engine.Rule("score >= 0.5 and data['course'] =~ 'DL.*'")
assert rule.matches({"score": 0.75, "data": {"course": "DL101"}})
assert not rule.matches({"score": 0.25, "data": {"course": "DL101"}})
print(len(builds))
"""


def start(data_dir: Path) -> tuple[int, str]:
    """How many times the tables were built in a fresh process, and what it logged."""
    done = subprocess.run(
        [sys.executable, "-c", _START, str(data_dir)], capture_output=True, text=True, check=True
    )
    return int(done.stdout.strip().splitlines()[-1]), done.stderr


def test_the_first_start_builds_and_saves_the_tables_the_next_reads_them(tmp_path: Path) -> None:
    assert start(tmp_path)[0] >= 1
    saved = json.loads(tables_file(tmp_path).read_text(encoding="utf-8"))
    assert saved["signature"] and saved["action"] and saved["productions"]
    assert start(tmp_path)[0] == 0
    assert start(tmp_path)[0] == 0


def test_a_damaged_file_is_rebuilt_and_replaced(tmp_path: Path) -> None:
    path = tables_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text('{"tabversion": "3.10", "action": {', encoding="utf-8")
    assert start(tmp_path)[0] >= 1
    assert start(tmp_path)[0] == 0


def test_tables_of_another_grammar_are_not_used(tmp_path: Path) -> None:
    start(tmp_path)
    path = tables_file(tmp_path)
    saved = json.loads(path.read_text(encoding="utf-8"))
    saved["signature"] = "another grammar"
    saved["action"] = {"0": {}}  # tables that would parse nothing
    path.write_text(json.dumps(saved), encoding="utf-8")
    assert start(tmp_path)[0] >= 1  # PLY compared the signatures and built its own


def test_a_data_directory_it_cannot_write_only_costs_the_build(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        blocked = tmp_path / "a-file-not-a-directory"
        blocked.write_text("", encoding="utf-8")
        data_dir = blocked  # even root cannot make cache/ under a file
    else:
        data_dir = tmp_path / "read-only"
        data_dir.mkdir(mode=0o500)
    assert start(data_dir)[0] >= 1
    assert start(data_dir)[0] >= 1
