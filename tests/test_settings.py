from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BRIDGE_CONFIG", "BRIDGE_DATABASE_URL", "BRIDGE_API_ACCESS", "BRIDGE_POINTS_PER_BADGE"):
        monkeypatch.delenv(name, raising=False)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_match_the_documented_module_options() -> None:
    settings = load_settings()
    assert settings.enable_achievements is True
    assert settings.badge_level_threshold == [100, 250, 500]
    assert settings.track_event_types[:2] == ["login", "purchase"]
    assert "course_completed" in settings.track_event_types
    assert settings.notification_type == ["in-app"]
    assert settings.points_per_badge == 0
    assert settings.api_access == "disabled"
    assert settings.sync_schedule == "0 2 * * *"


def test_the_embedded_database_lives_in_the_data_directory(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert settings.effective_database_url == f"sqlite:///{tmp_path.resolve()}/bridge.sqlite3"
    assert settings.is_embedded_database


def test_a_toml_file_sets_values_and_platforms(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        """
points_per_badge = 10
notification_type = "email"
[worker]
batch_size = 25
[notifications.email]
host = "smtp.example.edu"
from_address = "badges@example.edu"
[[platforms]]
id = "school-moodle"
kind = "moodle"
base_url = "https://moodle.example.edu"
token = "abc"
""",
    )
    settings = load_settings(config)
    assert settings.points_per_badge == 10 and settings.notification_type == ["email"]
    assert settings.worker.batch_size == 25
    platform = settings.platform("school-moodle")
    assert platform is not None and platform.kind == "moodle"
    assert platform.token is not None and platform.token.get_secret_value() == "abc"
    assert "abc" not in repr(settings)


def test_the_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path, "points_per_badge = 10\n[worker]\nbatch_size = 25\n")
    monkeypatch.setenv("BRIDGE_POINTS_PER_BADGE", "3")
    monkeypatch.setenv("BRIDGE_WORKER__BATCH_SIZE", "7")
    monkeypatch.setenv("BRIDGE_BADGE_LEVEL_THRESHOLD", "[10, 20]")
    settings = load_settings(config)
    assert (settings.points_per_badge, settings.worker.batch_size) == (3, 7)
    assert settings.badge_level_threshold == [10, 20]


def test_the_config_file_may_come_from_bridge_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_CONFIG", str(write(tmp_path, 'api_access = "read"\n')))
    assert load_settings().api_access == "read"


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            "badge_level_threshold = [500, 100]\n",
            "config: badge_level_threshold = [500, 100]: expected a non-empty list of strictly increasing",
        ),
        (
            'api_access = "sometimes"\n',
            "config: api_access = 'sometimes': Input should be 'disabled', 'read' or",
        ),
        (
            "points_per_badge = -5\n",
            "config: points_per_badge = -5: Input should be greater than or equal to 0",
        ),
        (
            'sync_schedule = "every night"\n',
            "config: sync_schedule = 'every night': expected a five-field cron",
        ),
        ('database_url = "mysql://x"\n', "config: database_url = 'mysql://x': expected a sqlite:/// or"),
        ("enable_achievments = true\n", "config: enable_achievments: unknown key"),
        ("[worker]\nbatch_size = 0\n", "config: worker.batch_size = 0: Input should be greater than 0"),
    ],
)
def test_a_bad_value_is_one_line_naming_key_value_and_expectation(
    tmp_path: Path, toml: str, expected: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(write(tmp_path, toml))
    assert len(caught.value.lines) == 1
    assert caught.value.lines[0].startswith(expected)


def test_secrets_are_not_echoed_in_errors(tmp_path: Path) -> None:
    config = write(tmp_path, '[[platforms]]\nid = "m"\nkind = "moodle"\ntoken = 12345\n')
    with pytest.raises(SettingsError) as caught:
        load_settings(config)
    assert "12345" not in str(caught.value) and "platforms.0.token = '***'" in str(caught.value)


def test_platform_ids_must_be_unique(tmp_path: Path) -> None:
    config = write(
        tmp_path, '[[platforms]]\nid = "m"\nkind = "moodle"\n[[platforms]]\nid = "m"\nkind = "canvas"\n'
    )
    with pytest.raises(SettingsError, match="repeated: m"):
        load_settings(config)


def test_a_missing_file_and_bad_toml_are_reported(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "nope.toml")
    with pytest.raises(SettingsError, match=r"config\.toml"):
        load_settings(write(tmp_path, "points_per_badge = = 1\n"))


def test_the_cli_stops_with_the_line_and_exit_status_2(tmp_path: Path) -> None:
    config = write(tmp_path, "points_per_badge = -1\n")
    result = CliRunner().invoke(main, ["--config", str(config), "db", "current"])
    assert result.exit_code == 2
    assert result.output.strip().startswith("config: points_per_badge = -1:")


def test_a_notification_channel_needs_its_configuration(tmp_path: Path) -> None:
    config = write(tmp_path, 'notification_type = ["in-app", "email", "webhook"]\n')
    with pytest.raises(SettingsError) as refused:
        load_settings(config)
    assert refused.value.lines == [
        "config: notification_type names email, webhook: configure [notifications.email], "
        "[[notifications.webhooks]]"
    ]
