"""``badge-bridge badges create FILE`` with an image name no file can have: refused naming ``image``,
exit status 1, no traceback."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from bridge.cli import main
from bridge.db.engine import Database
from tests.conftest import write_config


def test_a_badge_whose_image_name_is_too_long_is_refused_naming_image(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", database_url, tmp_path)
    definition = tmp_path / "night-owl.toml"
    definition.write_text(
        f'id = "night-owl"\nname = "Night Owl"\ndescription = "Five sign-ins."\nimage = "{"a" * 300}.svg"\n'
        '[[criteria.groups]]\n[[criteria.groups.requirements]]\nkinds = ["login"]\ntarget = 5\n'
    )
    result = CliRunner().invoke(main, ["--config", str(config), "badges", "create", str(definition)])
    assert result.exit_code == 1, result.output
    assert "image: " in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
