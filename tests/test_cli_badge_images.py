"""``badge-bridge badges create FILE`` and the badge's image: found in the badge templates folder or
beside FILE (copied into the folder), refused naming ``image`` otherwise (exit status 1, no traceback)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from bridge.cli import main
from bridge.db.engine import Database
from bridge.services.badge_admin import get_badge, list_badges
from bridge.services.badges import shipped_templates_dir
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


OWL = (
    'id = "night-owl"\nname = "Night Owl"\ndescription = "Five sign-ins."\nimage = "owl.svg"\n'
    '[[criteria.groups]]\n[[criteria.groups.requirements]]\nkinds = ["login"]\ntarget = 5\n'
)
OWL_SVG = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><circle cx="5" cy="5" r="4"/></svg>'


def _create(config: Path, definition: Path) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), "badges", "create", str(definition)])


def test_an_image_beside_the_template_file_is_copied_where_badge_images_are_read(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    config = write_config(tmp_path / "c.toml", database_url, tmp_path, f'badge_templates_dir = "{images}"')
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    (drafts / "night-owl.toml").write_text(OWL)
    (drafts / "owl.svg").write_text(OWL_SVG)

    result = _create(config, drafts / "night-owl.toml")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "night-owl created (criteria version 1)"
    assert (images / "owl.svg").read_text() == OWL_SVG
    assert [p.name for p in images.iterdir()] == ["owl.svg"]  # no temporary file left behind
    assert get_badge(database, "night-owl").image == "owl.svg"


def test_an_image_in_neither_place_is_refused_naming_both(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    config = write_config(tmp_path / "c.toml", database_url, tmp_path, f'badge_templates_dir = "{images}"')
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    (drafts / "night-owl.toml").write_text(OWL)

    result = _create(config, drafts / "night-owl.toml")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: image: 'owl.svg' is neither beside the template ({drafts}) nor in the badge templates "
        f"folder ({images})"
    ]
    assert "night-owl" not in [b.id for b in list_badges(database)]


def test_an_image_beside_the_file_needs_a_badge_templates_dir_to_be_copied_into(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", database_url, tmp_path)  # images: the shipped folder
    (tmp_path / "night-owl.toml").write_text(OWL)
    (tmp_path / "owl.svg").write_text(OWL_SVG)

    result = _create(config, tmp_path / "night-owl.toml")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: image: 'owl.svg' is beside the template, but images are read from the shipped templates "
        "folder: set badge_templates_dir in the settings to have it copied there"
    )
    assert not (shipped_templates_dir() / "owl.svg").exists()


def test_an_image_beside_the_file_never_replaces_a_different_one_of_the_same_name(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "owl.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    config = write_config(tmp_path / "c.toml", database_url, tmp_path, f'badge_templates_dir = "{images}"')
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    (drafts / "night-owl.toml").write_text(OWL)
    (drafts / "owl.svg").write_text(OWL_SVG)

    result = _create(config, drafts / "night-owl.toml")
    assert result.exit_code == 1
    assert "differs from the file of that name in the badge templates folder" in result.stderr
    assert (images / "owl.svg").read_text() == '<svg xmlns="http://www.w3.org/2000/svg"/>'

    (drafts / "owl.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')  # the same image: used
    assert _create(config, drafts / "night-owl.toml").exit_code == 0
