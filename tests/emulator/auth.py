"""Trust-on-first-use enrollment: the first secret seen for a client id is the one."""

from __future__ import annotations

from enum import StrEnum
import hashlib
import json
import os
from pathlib import Path
import secrets
import tempfile

# scrypt cost kept low: this is a test double, and every request verifies a secret.
_SCRYPT_N = 2**12
_SCRYPT_R = 8
_SCRYPT_P = 1


class Verdict(StrEnum):
    """Outcome of presenting a client id and secret."""

    ENROLLED = "enrolled"
    VERIFIED = "verified"
    MISMATCH = "mismatch"


def _hash(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(
        secret.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )


class EnrollmentStore:
    """Salted secret hashes per client id, persisted to a JSON file when one is given."""

    def __init__(self, state_file: Path | None) -> None:
        """Load enrollments from ``state_file`` (if it exists)."""
        self._path = state_file
        self._records: dict[str, dict[str, str]] = {}
        if state_file is not None and state_file.exists():
            self._records = json.loads(state_file.read_text(encoding="utf-8"))

    def check(self, client_id: str, secret: str) -> Verdict:
        """Enroll an unknown client, or compare the secret with the enrolled one."""
        record = self._records.get(client_id)
        if record is None:
            salt = secrets.token_bytes(16)
            self._records[client_id] = {
                "salt": salt.hex(),
                "hash": _hash(secret, salt).hex(),
            }
            self._save()
            return Verdict.ENROLLED
        presented = _hash(secret, bytes.fromhex(record["salt"]))
        if secrets.compare_digest(presented, bytes.fromhex(record["hash"])):
            return Verdict.VERIFIED
        return Verdict.MISMATCH

    def is_enrolled(self, client_id: str) -> bool:
        """Return True when a secret is enrolled for ``client_id``."""
        return client_id in self._records

    def reset(self, client_id: str) -> None:
        """Forget the enrolled secret (the dashboard's "reset secret")."""
        if self._records.pop(client_id, None) is not None:
            self._save()

    def _save(self) -> None:
        """Write the file atomically, so a crash never leaves half a state file."""
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".enrollments-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self._records, handle, indent=2, sort_keys=True)
            os.replace(tmp, self._path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
