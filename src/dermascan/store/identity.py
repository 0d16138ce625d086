"""Keys and hashes: API keys (random, stored as SHA-256) and the keyed patient hash (HMAC-SHA256).

A patient identifier is never stored or logged in clear: the store keeps ``HMAC-SHA256(patient_key, id)``,
which links a patient's visits without revealing who they are, and cannot be reversed by hashing a list
of likely identifiers without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from dermascan.errors import DermaScanError

KEY_PREFIX = "dsk_"
#: Characters of a key kept in clear (``dsk_`` + 8) to tell keys apart in listings and the access log.
PREFIX_LEN = len(KEY_PREFIX) + 8
MIN_PATIENT_KEY_BYTES = 16


class PatientKeyError(DermaScanError, ValueError):
    """No usable patient-hash key, with how to provide one."""


def new_api_key() -> str:
    """A fresh API key: ``dsk_`` + 43 URL-safe characters (256 random bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """SHA-256 of an API key (hex): what the store keeps."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_prefix(key: str) -> str:
    return key[:PREFIX_LEN]


#: The shipped Secret template's placeholder starts so; a key that does is refused, never used.
PLACEHOLDER_PREFIX = b"REPLACE"


class PatientHasher:
    """``HMAC-SHA256(key, patient_id)`` as hex.

    Args:
        key: the secret; at least 16 bytes.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_PATIENT_KEY_BYTES:
            raise PatientKeyError(
                f"the patient key has {len(key)} bytes; use at least {MIN_PATIENT_KEY_BYTES} random bytes "
                "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
        if key.startswith(PLACEHOLDER_PREFIX):
            raise PatientKeyError(
                "the patient key is the placeholder of deploy/k8s/secret.example.yaml; create the Secret from a "
                "real key (`openssl rand -hex 32 > patient.key`, then docs/deploy.md)"
            )
        self._key = key

    def __call__(self, patient_id: str) -> str:
        return hmac.new(self._key, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:  # never print the key
        return "PatientHasher(<key hidden>)"

    @classmethod
    def from_sources(cls, key: str | None, key_file: str | os.PathLike[str] | None) -> PatientHasher:
        """From the key itself (``DERMASCAN_PATIENT_KEY``) or a file that holds it (whitespace stripped).

        Raises:
            PatientKeyError: neither given, the file is missing, or the key is too short.
        """
        if key:
            return cls(key.encode("utf-8"))
        if key_file:
            path = Path(key_file).expanduser()
            if not path.is_file():
                raise PatientKeyError(f"patient key file {path} does not exist")
            return cls(path.read_bytes().strip())
        raise PatientKeyError(
            "no patient key: patient ids are stored as HMAC-SHA256 and the service needs the key. Set "
            "DERMASCAN_PATIENT_KEY, or name a key file with --patient-key-file / patient_key_file, or run with --dev "
            "(a throwaway key: hashes are not linkable across restarts)"
        )

    @classmethod
    def ephemeral(cls) -> PatientHasher:
        """A random key for ``--dev``: hashes from one run cannot be linked to another's."""
        return cls(secrets.token_bytes(32))


__all__ = ["PatientHasher", "PatientKeyError", "hash_api_key", "key_prefix", "new_api_key"]
