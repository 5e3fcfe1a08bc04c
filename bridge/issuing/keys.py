"""The issuer's signing keys: generated on first start into ``<data_dir>/keys``, rotated, never logged.

One RSA (RS256) and one Ed25519 (EdDSA) key are active at a time. Rotation adds a new pair and retires the
old one: retired keys sign nothing new but stay published, so badges signed with them still verify.
Private keys are PEM files readable by the owner only (mode 600); ``keys.json`` lists them. A 32-byte
server secret beside them derives recipient salts and unguessable public ids; it never rotates, because
those ids are in URLs already handed out.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

Algorithm = Literal["RS256", "EdDSA"]
ALGORITHMS: tuple[Algorithm, ...] = ("RS256", "EdDSA")
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey
log = logging.getLogger(__name__)
_MANIFEST = "keys.json"
_SECRET = "secret.bin"
_PREFIX: dict[Algorithm, str] = {"RS256": "rsa", "EdDSA": "ed25519"}


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: Algorithm
    created_at: datetime
    active: bool
    private_key: PrivateKey = field(repr=False, compare=False)
    retired_at: datetime | None = None

    @property
    def public_key(self) -> PublicKey:
        return self.private_key.public_key()

    def public_pem(self) -> str:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def public_jwk(self, kid: str | None = None) -> dict[str, Any]:
        """The public half as a JWK (never ``d``); ``kid`` defaults to the key's own id."""
        if isinstance(self.public_key, rsa.RSAPublicKey):
            jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self.public_key, as_dict=True)
        else:
            jwk = OKPAlgorithm.to_jwk(self.public_key, as_dict=True)
        return {**jwk, "kid": kid or self.kid, "alg": self.alg, "use": "sig"}


class KeyRing:
    """The key set in one directory, re-read when another process (``keys rotate``) changed it."""

    def __init__(self, directory: Path, algorithms: tuple[Algorithm, ...] = ALGORITHMS) -> None:
        self.directory = directory
        self.algorithms = algorithms
        self._keys: list[SigningKey] = []
        self._stamp: int | None = None
        self._secret: bytes | None = None

    @classmethod
    def open(cls, data_dir: Path) -> KeyRing:
        """The key ring of ``data_dir``, creating the directory, a first key pair and the secret."""
        return cls.open_directory(data_dir / "keys", ALGORITHMS)

    @classmethod
    def open_directory(cls, directory: Path, algorithms: tuple[Algorithm, ...]) -> KeyRing:
        """A key ring of its own (the LTI tool's, say), with a key of each of ``algorithms``."""
        ring = cls(directory, algorithms)
        with ring._locked():
            if not (ring.directory / _MANIFEST).is_file():
                ring._write_manifest(ring._generate_pair([]))
            if not (ring.directory / _SECRET).is_file():
                _write_private(ring.directory / _SECRET, secrets.token_bytes(32))
        return ring

    @property
    def secret(self) -> bytes:
        if self._secret is None:
            self._secret = (self.directory / _SECRET).read_bytes()
        return self._secret

    def all_keys(self) -> list[SigningKey]:
        """Every key, newest first."""
        stamp = (self.directory / _MANIFEST).stat().st_mtime_ns
        if stamp != self._stamp:
            self._keys, self._stamp = self._load(), stamp
        return self._keys

    def active(self, alg: Algorithm) -> SigningKey:
        return next(k for k in self.all_keys() if k.alg == alg and k.active)

    def get(self, kid: str) -> SigningKey | None:
        return next((k for k in self.all_keys() if k.kid == kid), None)

    def rotate(self) -> list[SigningKey]:
        """Retire the active pair and make a new one; returns the new keys."""
        with self._locked():
            entries = self._manifest_entries()
            retired_at = datetime.now(UTC).replace(microsecond=0).isoformat()
            for entry in entries:
                if entry["active"]:
                    entry["active"], entry["retired_at"] = False, retired_at
            new = self._generate_pair(entries)
            self._write_manifest(new + entries)
        return [k for k in self.all_keys() if k.kid in {e["kid"] for e in new}]

    def _generate_pair(self, existing: list[dict[str, Any]]) -> list[dict[str, Any]]:
        taken = {e["kid"] for e in existing}
        now = datetime.now(UTC).replace(microsecond=0)
        entries = []
        for alg in self.algorithms:
            kid = f"{_PREFIX[alg]}-{now:%Y%m%d}-{secrets.token_hex(4)}"
            assert kid not in taken  # 32 random bits per day: a clash means a broken random source
            key: PrivateKey = (
                rsa.generate_private_key(public_exponent=65537, key_size=2048)
                if alg == "RS256"
                else ed25519.Ed25519PrivateKey.generate()
            )
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            _write_private(self.directory / f"{kid}.pem", pem)
            entries.append({"kid": kid, "alg": alg, "created_at": now.isoformat(), "active": True})
        # Key ids are public (they are in every JWKS); the key material is never logged.
        log.info("signing_keys.created", extra={"kids": [e["kid"] for e in entries]})
        return entries

    def _manifest_entries(self) -> list[dict[str, Any]]:
        document = json.loads((self.directory / _MANIFEST).read_text(encoding="utf-8"))
        return list(document["keys"])

    def _write_manifest(self, entries: list[dict[str, Any]]) -> None:
        temporary = self.directory / f".{_MANIFEST}.{os.getpid()}"
        temporary.write_text(json.dumps({"keys": entries}, indent=2), encoding="utf-8")
        os.replace(temporary, self.directory / _MANIFEST)  # readers see the old or the new list, whole

    def _load(self) -> list[SigningKey]:
        loaded = []
        for entry in self._manifest_entries():
            pem = (self.directory / f"{entry['kid']}.pem").read_bytes()
            private = serialization.load_pem_private_key(pem, password=None)
            assert isinstance(private, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
            loaded.append(
                SigningKey(
                    kid=entry["kid"],
                    alg=entry["alg"],
                    created_at=datetime.fromisoformat(entry["created_at"]),
                    active=bool(entry["active"]),
                    private_key=private,
                    retired_at=(
                        datetime.fromisoformat(entry["retired_at"]) if entry.get("retired_at") else None
                    ),
                )
            )
        loaded.sort(key=lambda k: k.created_at, reverse=True)  # stable: the manifest is newest first
        return loaded

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time: gunicorn workers starting together must not each make a first key."""
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        with open(self.directory / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _write_private(path: Path, content: bytes) -> None:
    """Create ``path`` with mode 600 from the start (never world-readable, not even for a moment)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
