"""The one typed settings table: a TOML file, overridden by ``BRIDGE_*`` environment variables.

Nested keys use a double underscore in the environment (``BRIDGE_WORKER__BATCH_SIZE=50``); lists and
tables are given as JSON (``BRIDGE_BADGE_LEVEL_THRESHOLD='[50, 100, 200]'``).
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bridge.domain.events import LMS_KINDS

CONFIG_ENV_VAR = "BRIDGE_CONFIG"
_SECRET_WORDS = ("token", "secret", "password", "key")


class SettingsError(Exception):
    """Settings that cannot start the service; ``lines`` holds one line per bad key."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def _cron(value: str) -> str:
    try:
        CronTrigger.from_crontab(value, timezone="UTC")
    except ValueError as error:
        raise ValueError(f"expected a five-field cron expression such as '0 2 * * *' ({error})") from None
    return value


CronExpression = Annotated[str, Field(min_length=9)]
PlatformId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IssuerSettings(_Section):
    """Who issues the badges: the Open Badges Issuer Profile (OB 2.0 requires name, url and email)."""

    name: Annotated[str, Field(min_length=1, max_length=200)] = "LMS Badge Bridge"
    url: AnyHttpUrl | None = None  # None: public_base_url
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")] = "badges@example.org"
    image: AnyHttpUrl | None = None
    description: str = ""
    # OB 2.0 assertions as signed JWS (verified with the published key) instead of hosted JSON.
    signed: bool = False


class PlatformSettings(_Section):
    """One LMS instance (or another event source) whose events the bridge accepts."""

    id: PlatformId
    kind: Literal["moodle", "canvas", "custom"]
    name: str = ""
    base_url: AnyHttpUrl | None = None
    token: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    sync_schedule: CronExpression | None = None
    # This platform's learners get badges from this issuer instead of the global one (one per tenant).
    issuer: IssuerSettings | None = None
    # How webhooks prove they come from the LMS. Canvas: "jwt" (signed Live Events, the default) or
    # "unsigned"; Moodle: "token" (local_webhooks' token in the body, the default) or "hmac" (headers).
    webhook_auth: Literal["jwt", "unsigned", "token", "hmac"] | None = None
    jwks_url: AnyHttpUrl | None = None  # Canvas: the JWKS of signed Live Events; unset: Instructure's
    jwt_issuer: str | None = None  # Canvas: the iss claim required of signed Live Events; unset: any
    courses: list[Annotated[str, Field(min_length=1, max_length=255)]] = []  # to sync; empty: all visible

    @field_validator("sync_schedule")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        return value if value is None else _cron(value)

    @model_validator(mode="after")
    def _webhook_auth_fits_kind(self) -> PlatformSettings:
        allowed = {"canvas": ("jwt", "unsigned"), "moodle": ("token", "hmac")}.get(self.kind, ())
        if self.webhook_auth is not None and self.webhook_auth not in allowed:
            choices = " or ".join(repr(a) for a in allowed) or "nothing (no webhooks)"
            raise ValueError(f"webhook_auth: a {self.kind} platform takes {choices}")
        return self

    @property
    def effective_webhook_auth(self) -> str:
        return self.webhook_auth or ("jwt" if self.kind == "canvas" else "token")


class ServerSettings(_Section):
    bind: str = "127.0.0.1:8000"
    workers: PositiveInt = 1
    threads: PositiveInt = 8
    embedded_worker: bool = True
    max_request_bytes: PositiveInt = 1024 * 1024
    # Slow clients (bridge.server): the request line and headers must be whole within this many seconds of
    # the connection (else it is closed), the body within this many seconds more (else 408).
    header_timeout_seconds: PositiveFloat = 15.0
    body_timeout_seconds: PositiveFloat = 30.0
    # Proxies (addresses or networks) whose X-Forwarded-Proto, -Host and -For are believed: behind a
    # TLS-terminating proxy the tool must build https URLs and set Secure cookies. Empty: none.
    trusted_proxies: list[IPvAnyNetwork] = []
    # Serve HTTPS directly (PEM files), when no proxy terminates TLS: LTI launches from an LMS need it.
    tls_certificate: Path | None = None
    tls_private_key: Path | None = None

    @model_validator(mode="after")
    def _tls_files_together(self) -> ServerSettings:
        if (self.tls_certificate is None) != (self.tls_private_key is None):
            raise ValueError("tls_certificate and tls_private_key: set both or neither")
        for path in (self.tls_certificate, self.tls_private_key):
            if path is not None and not path.is_file():
                raise ValueError(f"{path}: no such file")
        return self


class WorkerSettings(_Section):
    # Measured with each window paying for its own WAL checkpoint (benchmarks/evaluator.py), 250 a batch
    # costs about 5 % less per event than 100 for new learners and about 4 % more for learners with
    # history, a running service's steady state; 100 also holds SQLite's single writer, which an
    # ingest request may wait for, a third as long (about 35 ms a batch).
    batch_size: PositiveInt = 100
    idle_sleep_seconds: PositiveFloat = 0.5
    max_attempts: PositiveInt = 8
    backoff_base_seconds: PositiveFloat = 2.0
    backoff_max_seconds: PositiveFloat = 3600.0
    rules_refresh_seconds: PositiveFloat = 5.0


class SyncSettings(_Section):
    """How the connectors talk to the LMSs during a sync (and when a webhook needs a grade)."""

    timeout_seconds: PositiveFloat = 30.0
    attempts: PositiveInt = 6
    backoff_base_seconds: PositiveFloat = 1.0
    backoff_max_seconds: PositiveFloat = 60.0
    concurrency: PositiveInt = 2
    pace_below: NonNegativeFloat = 100.0
    submissions_overlap_minutes: NonNegativeInt = 60
    replay_window_seconds: PositiveFloat = 300.0
    lease_seconds: PositiveFloat = 3600.0


class HealthSettings(_Section):
    max_worker_lag_seconds: PositiveFloat = 300.0


class LeaderboardSettings(_Section):
    anonymise: bool = False
    size: PositiveInt = 10


class WebhookEndpointSettings(_Section):
    """An outbound webhook: notifications signed as the Standard Webhooks specification says."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    url: AnyHttpUrl
    secret: SecretStr  # "whsec_" and base64, as Standard Webhooks secrets are written
    events: list[Literal["award.made", "award.revoked", "approval.requested", "sync.failed"]] = ["award.made"]
    timeout_seconds: PositiveFloat = 10.0  # to connect, and between bytes of the answer


class EmailSettings(_Section):
    """SMTP for learners' award emails and administrators' alerts. The password is never logged."""

    host: Annotated[str, Field(min_length=1)]
    port: PositiveInt | None = None  # None: 587, 465 or 25, as security says
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    from_address: Annotated[str, Field(min_length=3)]
    reply_to: str | None = None
    admin_address: str | None = None  # alerts: a badge waits for approval, a sync failed
    templates_dir: Path | None = None  # the operator's templates, file by file over the shipped ones
    timeout_seconds: PositiveFloat = 30.0


class XapiSettings(_Section):
    """A Learning Record Store that receives an "earned" statement per award (basic auth)."""

    endpoint: AnyHttpUrl
    username: Annotated[str, Field(min_length=1)]
    password: SecretStr
    actor_id: Literal["account", "mbox"] = "account"
    timeout_seconds: PositiveFloat = 10.0


class NotificationSettings(_Section):
    """How notifications are delivered: retried with backoff, parked after max_attempts."""

    max_attempts: PositiveInt = 8
    backoff_base_seconds: PositiveFloat = 5.0
    backoff_max_seconds: PositiveFloat = 3600.0
    batch_size: PositiveInt = 50
    idle_sleep_seconds: PositiveFloat = 1.0
    # A sender holds the notifications it is delivering this long; a sender that dies holding them (a
    # killed worker) leaves them to the next one after it. Longer than any channel's timeouts.
    lease_seconds: PositiveFloat = 300.0
    email: EmailSettings | None = None
    webhooks: list[WebhookEndpointSettings] = []
    xapi: XapiSettings | None = None

    @model_validator(mode="after")
    def _lease_outlasts_a_delivery(self) -> NotificationSettings:
        # A webhook may take its timeout to connect and again between bytes; mail and xAPI alike.
        timeouts = [hook.timeout_seconds for hook in self.webhooks]
        timeouts += [part.timeout_seconds for part in (self.email, self.xapi) if part is not None]
        slowest = 3 * max(timeouts, default=0.0)
        if self.lease_seconds <= slowest:
            raise ValueError(
                f"lease_seconds ({self.lease_seconds:g}) must be more than three times the longest channel "
                f"timeout ({slowest / 3:g}s): a delivery still under way would be sent again"
            )
        return self


class LtiSettings(_Section):
    """The LTI 1.3 tool: how launches are checked and how long their pages work."""

    title: Annotated[str, Field(min_length=1, max_length=100)] = "Badges"
    description: Annotated[str, Field(max_length=500)] = "Badges, progress and leaderboards for this course."
    session_minutes: PositiveInt = 120  # how long a launch's pages keep working
    clock_leeway_seconds: Annotated[float, Field(ge=0, le=300)] = 30.0  # platforms' clocks run ahead
    max_token_age_seconds: PositiveFloat = 600.0  # an id_token issued longer ago is refused
    timeout_seconds: PositiveFloat = 10.0  # every call to a platform (keys, tokens, services)
    jwks_cache_seconds: PositiveFloat = 3600.0
    jwks_refetch_seconds: PositiveFloat = 30.0  # at most one refetch per platform for an unknown key id
    retired_key_days: NonNegativeInt = 14  # a rotated-out tool key stays published this long


def _rate(value: str) -> str:
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError:
        raise ValueError("expected a rate such as '600/minute' or '10/second;600/hour'") from None
    return value


RateLimit = Annotated[str, AfterValidator(_rate)]


class RateLimitSettings(_Section):
    """Requests allowed per API key and per webhook platform (bridge.web.limits), answered 429 beyond."""

    enabled: bool = True
    api: RateLimit = "600/minute"  # /api/v1 calls, counted per API key
    api_anonymous: RateLimit = "60/minute"  # /api/v1 calls without a valid key, counted per client address
    webhooks: RateLimit = "1200/minute"  # LMS webhooks, counted per platform
    # Unset: counted in each process's memory (right for one process). Several processes or nodes share
    # their counts in Redis: "redis://127.0.0.1:6379/0" (a password in it is never logged).
    storage_url: SecretStr | None = None

    @field_validator("storage_url")
    @classmethod
    def _known_storage(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None and not re.match(r"^(redis|rediss|redis\+unix|memory)://", url.get_secret_value()):
            raise ValueError("expected a redis://, rediss:// or redis+unix:// URL")
        return url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BRIDGE_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: Path = Path("data")
    database_url: str | None = None
    public_base_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8000")
    badge_templates_dir: Path | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    timezone: str = "UTC"

    enable_achievements: bool = True
    badge_level_threshold: list[PositiveInt] = [100, 250, 500]
    track_event_types: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]] = [
        "login",
        "purchase",
        *LMS_KINDS,
    ]
    # The channels notifications go to (one or several); a single name is read as a list of one.
    notification_type: list[Literal["in-app", "email", "webhook", "xapi"]] = ["in-app"]
    points_per_badge: NonNegativeInt = 0
    api_access: Literal["disabled", "read", "write"] = "disabled"
    sync_schedule: CronExpression = "0 2 * * *"

    platforms: list[PlatformSettings] = []
    server: ServerSettings = ServerSettings()
    worker: WorkerSettings = WorkerSettings()
    health: HealthSettings = HealthSettings()
    sync: SyncSettings = SyncSettings()
    leaderboard: LeaderboardSettings = LeaderboardSettings()
    issuer: IssuerSettings = IssuerSettings()
    lti: LtiSettings = LtiSettings()
    notifications: NotificationSettings = NotificationSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()

    @field_validator("sync_schedule")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        return _cron(value)

    @field_validator("notification_type", mode="before")
    @classmethod
    def _one_or_several(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("expected an IANA time zone name such as 'UTC' or 'Europe/Berlin'") from None
        return name

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @field_validator("badge_level_threshold")
    @classmethod
    def _increasing(cls, thresholds: list[int]) -> list[int]:
        if not thresholds or any(b <= a for a, b in itertools.pairwise(thresholds)):
            raise ValueError("expected a non-empty list of strictly increasing point thresholds")
        return thresholds

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, url: str | None) -> str | None:
        if url is not None and not re.match(r"^(sqlite|postgresql\+psycopg)://", url):
            raise ValueError("expected a sqlite:/// or postgresql+psycopg:// URL")
        return url

    @model_validator(mode="after")
    def _channels_configured(self) -> Settings:
        needs = {"email": self.notifications.email, "xapi": self.notifications.xapi}
        needs["webhook"] = self.notifications.webhooks or None
        missing = [name for name in self.notification_type if name in needs and needs[name] is None]
        if missing:
            where = {"email": "[notifications.email]", "xapi": "[notifications.xapi]"}
            places = ", ".join(where.get(m, "[[notifications.webhooks]]") for m in missing)
            raise ValueError(f"notification_type names {', '.join(missing)}: configure {places}")
        return self

    @model_validator(mode="after")
    def _unique_platforms(self) -> Settings:
        ids = [p.id for p in self.platforms]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"platform ids must be unique; repeated: {', '.join(duplicates)}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'bridge.sqlite3'}"

    @property
    def is_embedded_database(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    def platform(self, platform_id: str) -> PlatformSettings | None:
        return next((p for p in self.platforms if p.id == platform_id), None)


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Read settings from ``config_file`` (or ``$BRIDGE_CONFIG``), the environment and ``overrides``.

    Raises :class:`SettingsError` with one line per bad key.
    """
    path = config_file or os.environ.get(CONFIG_ENV_VAR)
    if path is not None and not Path(path).is_file():
        raise SettingsError([f"config: file {str(path)!r} not found (from --config or ${CONFIG_ENV_VAR})"])

    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=path)

    try:
        return _FromFile(**overrides)
    except ValidationError as error:
        raise SettingsError([_describe(e) for e in error.errors()]) from None
    except ValueError as error:  # a TOML syntax error surfaces here
        raise SettingsError([f"config: {path}: {error}"]) from None


def _describe(error: Any) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if (
        not key
    ):  # a rule across keys: its message names them; the input (every value, secrets too) is not shown
        return f"config: {error['msg'].removeprefix('Value error, ')}"
    if error["type"] == "extra_forbidden":
        return f"config: {key}: unknown key (check the spelling against config.example.toml)"
    value = error.get("input")
    shown = "'***'" if any(w in key.lower() for w in _SECRET_WORDS) else repr(value)
    message = error["msg"].removeprefix("Value error, ")
    return f"config: {key} = {shown}: {message}"
