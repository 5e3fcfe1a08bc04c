"""Plumbing shared by the fake LTI platform: fixtures, recorded requests, replies, keys, JWT signing.

See ``tests.lti.platform`` for the harness itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "lti"
CANVAS_ISSUER = "https://canvas.instructure.com"
LTI = "https://purl.imsglobal.org/spec/lti/claim/"
# Short names accepted wherever a claim is named (overrides, drop); other names are used as they are.
_SHORT = "message_type version deployment_id target_link_uri resource_link context roles custom"
CLAIMS = {
    **{
        name: LTI + name
        for name in f"{_SHORT} launch_presentation tool_platform lis lti11_legacy_user_id".split()
    },
    "nrps": "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice",
    "ags": "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint",
    "deep_linking_settings": "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings",
    "content_items": "https://purl.imsglobal.org/spec/lti-dl/claim/content_items",
    "data": "https://purl.imsglobal.org/spec/lti-dl/claim/data",
}
SCOPE_LINEITEM = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
SCOPE_LINEITEM_RO = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly"
SCOPE_RESULT_RO = "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly"
SCOPE_SCORE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
SCOPE_NRPS = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
MEDIA_NRPS = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
MEDIA_LINEITEM = "application/vnd.ims.lis.v2.lineitem+json"
MEDIA_LINEITEMS = "application/vnd.ims.lis.v2.lineitemcontainer+json"
MEDIA_SCORE = "application/vnd.ims.lis.v1.score+json"
MEDIA_RESULTS = "application/vnd.ims.lis.v2.resultcontainer+json"
TOOL_CONFIGURATION = "https://purl.imsglobal.org/spec/lti-tool-configuration"
ACTIVITY_PROGRESS = {"Initialized", "Started", "InProgress", "Submitted", "Completed"}
GRADING_PROGRESS = {"FullyGraded", "Pending", "PendingManual", "Failed", "NotReady"}


def claim_name(name: str) -> str:
    return CLAIMS.get(name, name)


@cache
def _fixture_text(kind: str, message: str) -> str:
    name = "resource_link" if message == "resource" else "deep_linking"
    return (FIXTURES / f"{kind}_{name}_launch.json").read_text(encoding="utf-8")


def load_fixture(kind: str, message: str = "resource") -> dict[str, Any]:
    """A fresh copy of a fixture's claims, ``_``-keys included, ``PLATFORM`` not yet replaced."""
    if kind not in ("moodle", "canvas") or message not in ("resource", "deep_linking"):
        raise ValueError(f"no fixture for kind={kind!r} message={message!r}")
    return json.loads(_fixture_text(kind, message))


def substitute(value: Any, base_url: str) -> Any:
    """Replace the ``PLATFORM`` placeholder that starts string values (recursively) with ``base_url``."""
    if isinstance(value, str):
        return base_url + value[len("PLATFORM") :] if value.startswith("PLATFORM") else value
    if isinstance(value, list):
        return [substitute(item, base_url) for item in value]
    if isinstance(value, dict):
        return {key: substitute(item, base_url) for key, item in value.items()}
    return value


@dataclass
class RecordedRequest:
    """One HTTP request the harness received, as it arrived."""

    method: str
    path: str  # with the query string
    headers: dict[str, str]
    body: bytes = b""

    def header(self, name: str, default: str = "") -> str:
        wanted = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == wanted), default)

    @property
    def url_path(self) -> str:
        return urlsplit(self.path).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query, keep_blank_values=True)

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return {
            key: values[-1]
            for key, values in parse_qs(self.body.decode(errors="replace"), keep_blank_values=True).items()
        }


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AccessToken:
    token: str
    client_id: str
    scopes: tuple[str, ...]
    expires_at: float


def json_reply(status: int, data: Any, content_type: str = "application/json", **headers: str) -> Reply:
    return Reply(status, json.dumps(data).encode(), {"Content-Type": content_type, **headers})


def error_reply(status: int, error: str, description: str = "", **headers: str) -> Reply:
    body = {"error": error, **({"error_description": description} if description else {})}
    return json_reply(status, body, **headers)


def fetch_jwks(url: str, ca_bundle: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
    """GET a JWKS from the tool, on loopback only; HTTPS is verified against ``ca_bundle`` when given."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"the harness only fetches loopback http(s) URLs, not {url!r}")
    verify: str | bool = ca_bundle if parts.scheme == "https" and ca_bundle else True
    response = requests.get(url, timeout=timeout, verify=verify)
    response.raise_for_status()
    return response.json()


def key_from_jwks(jwks: dict[str, Any], kid: str | None) -> Any:
    """The public key for ``kid`` (or the only key when no kid is given); LookupError when none fits."""
    keys = jwks.get("keys", [])
    matching = [key for key in keys if key.get("kid") == kid] if kid else keys[:1] if len(keys) == 1 else []
    if not matching:
        raise LookupError(f"no key with kid {kid!r} in the tool's JWKS")
    return jwt.PyJWK(matching[0]).key


def accepts(request: RecordedRequest, media_type: str) -> bool:
    accept = request.header("Accept")
    return not accept or any(
        part.split(";")[0].strip() in (media_type, "application/json", "*/*") for part in accept.split(",")
    )


def content_type(request: RecordedRequest) -> str:
    return request.header("Content-Type").split(";")[0].strip().lower()


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class AuthorizationError(Exception):
    """The platform refused an OIDC authentication request (``error`` is the OAuth2/OIDC error code)."""

    def __init__(self, error: str, description: str, *, redirect_allowed: bool = True) -> None:
        super().__init__(f"{error}: {description}")
        self.error, self.description, self.redirect_allowed = error, description, redirect_allowed


class DeepLinkingError(Exception):
    """The platform refused a deep linking response."""


@dataclass(frozen=True)
class PlatformKey:
    """An RSA 2048 signing key with its kid."""

    kid: str
    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls, kid: str | None = None) -> PlatformKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(kid or secrets.token_hex(8), key)

    def public_jwk(self) -> dict[str, Any]:
        """The JWK as Moodle's certs.php and Canvas publish it: kty, alg, kid, e, n, use (no key_ops)."""
        jwk = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {"kty": "RSA", "alg": "RS256", "kid": self.kid, "e": jwk["e"], "n": jwk["n"], "use": "sig"}

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode_jwt(
    claims: Mapping[str, Any], key: PlatformKey, alg: str = "RS256", header: Mapping[str, Any] | None = None
) -> str:
    """Sign with ``key``: RS*/PS* properly, ``none`` unsigned, HS* with the key's PUBLIC PEM as the secret."""
    if alg.upper() != "NONE" and not alg.upper().startswith("HS"):
        return jwt.encode(dict(claims), key.private_key, algorithm=alg, headers=dict(header or {}))
    fields = {"typ": "JWT", **(header or {}), "alg": alg}
    signing_input = f"{_b64(json.dumps(fields).encode())}.{_b64(json.dumps(dict(claims)).encode())}"
    if alg.upper() == "NONE":
        return signing_input + "."
    digest = getattr(hashlib, "sha" + alg[2:])
    return f"{signing_input}.{_b64(hmac.new(key.public_pem(), signing_input.encode(), digest).digest())}"


def form_post_page(action: str, fields: Mapping[str, str]) -> bytes:
    """An auto-submitting form_post page, as Moodle's auth.php writes it."""
    inputs = "".join(
        f'  <input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}"/>\n'
        for name, value in fields.items()
    )
    return (
        "<!DOCTYPE html>\n<html><head><title>Launching</title></head><body>\n"
        f'<form action="{html.escape(action)}" name="ltiAuthForm" id="ltiAuthForm" method="post"'
        f' enctype="application/x-www-form-urlencoded">\n{inputs}</form>\n'
        "<script>document.ltiAuthForm.submit();</script>\n</body></html>\n"
    ).encode()


def lineitem_problem(request: RecordedRequest) -> tuple[str, dict[str, Any]]:
    try:
        line = request.json()
    except ValueError:
        return "the body is not JSON", {}
    if not isinstance(line, dict):
        return "a line item is a JSON object", {}
    line.pop("id", None)
    if not isinstance(line.get("label"), str) or not line["label"].strip():
        return "label is required", {}
    if not is_number(line.get("scoreMaximum")) or line["scoreMaximum"] <= 0:
        return "scoreMaximum must be a number > 0", {}
    return "", line


def score_problem(score: Any) -> str:
    if not isinstance(score, dict):
        return "a score is a JSON object"
    if not isinstance(score.get("userId"), str) or not score["userId"]:
        return "userId is required"
    if score.get("activityProgress") not in ACTIVITY_PROGRESS:
        return f"activityProgress must be one of {sorted(ACTIVITY_PROGRESS)}"
    if score.get("gradingProgress") not in GRADING_PROGRESS:
        return f"gradingProgress must be one of {sorted(GRADING_PROGRESS)}"
    try:
        datetime.fromisoformat(str(score.get("timestamp")))
    except ValueError:
        return "timestamp must be an ISO 8601 date-time"
    if "scoreGiven" in score:
        if not is_number(score["scoreGiven"]) or score["scoreGiven"] < 0:
            return "scoreGiven must be a number >= 0"
        if not is_number(score.get("scoreMaximum")) or score["scoreMaximum"] <= 0:
            return "scoreMaximum (> 0) is required with scoreGiven"
    return ""


def registration_problem(metadata: Any, kind: str) -> str:
    if not isinstance(metadata, dict):
        return "the registration is a JSON object"
    for key in ("initiate_login_uri", "client_name", "jwks_uri"):
        if not isinstance(metadata.get(key), str) or not metadata[key]:
            return f"missing required attribute {key}"
    if "id_token" not in (metadata.get("response_types") or []):
        return "response_types must include id_token"
    uris = metadata.get("redirect_uris")
    if not isinstance(uris, list) or not uris or not all(isinstance(uri, str) for uri in uris):
        return "redirect_uris must be a non-empty list"
    if metadata.get("token_endpoint_auth_method") != "private_key_jwt":
        return "token_endpoint_auth_method must be private_key_jwt"
    if metadata.get("application_type", "web") != "web" or (
        kind == "canvas" and "application_type" not in metadata
    ):
        return "application_type must be web"
    if kind == "canvas":
        if not {"client_credentials", "implicit"} <= set(metadata.get("grant_types") or []):
            return "grant_types must include client_credentials and implicit"
        if not isinstance(metadata.get("scope"), str):
            return "missing required attribute scope"
    configuration = metadata.get(TOOL_CONFIGURATION)
    if not isinstance(configuration, dict):
        return f"missing {TOOL_CONFIGURATION}"
    for key in ("domain", "target_link_uri"):
        if not isinstance(configuration.get(key), str) or not configuration[key]:
            return f"missing required attribute {key} in {TOOL_CONFIGURATION}"
    if kind == "canvas" and not all(
        isinstance(configuration.get(key), list) for key in ("claims", "messages")
    ):
        return f"claims and messages are required in {TOOL_CONFIGURATION}"
    return ""


def make_handler(receive: Callable[[RecordedRequest], Reply]) -> type[BaseHTTPRequestHandler]:
    """A request handler class that hands each request, recorded as it arrived, to ``receive``."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeLtiPlatform/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the platform records requests
            return

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            reply = receive(RecordedRequest(self.command, self.path, dict(self.headers.items()), body))
            try:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a hung /jwks)
                pass

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler
