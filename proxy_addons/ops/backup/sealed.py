"""Sealed (encrypted and authenticated) backup archives, with a key the school keeps off the box.

An archive holds the CA's private key, password hashes and pupils' browsing, so a
copy that leaves the gateway must be useless to whoever finds it. The format:

    SCHOOLGATE-SEALED/1\\n            magic
    1 byte                            'K' a key from `backup key-new`, 'P' a passphrase
    16 bytes                          salt (random for each archive)
    8 bytes                           the key's id ('K'; zeros for 'P'), to name a wrong key
    then records of up to 64 KiB      AES-256-GCM; nonce = record number (8 bytes) + a
                                      last-record flag (1 byte) + 3 zero bytes; the header
                                      above is each record's associated data

The archive's own key is HKDF-SHA256(master, salt); the master is the key file's
32 bytes, or scrypt(passphrase, salt). Numbered records with a last-record flag
mean a record changed, dropped, reordered or cut off at the end is refused.
Records are streamed: no plaintext archive is written on the box while sealing.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import hmac
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from proxy_addons.ops.backup.archive import BackupError

MAGIC = b"SCHOOLGATE-SEALED/1\n"
KEY_PREFIX = "schoolgate-backup-key-1:"
RECORD = 64 * 1024
TAG = 16
MIN_PASSPHRASE = 12
_HEADER = len(MAGIC) + 1 + 16 + 8


@dataclasses.dataclass(frozen=True)
class BackupKey:
    """A key file's contents: a generated key, or a passphrase (at least 12 characters)."""

    secret: bytes = dataclasses.field(repr=False)
    passphrase: bool

    @property
    def key_id(self) -> bytes:
        if self.passphrase:
            return bytes(8)
        return hmac.new(self.secret, b"schoolgate backup key id", hashlib.sha256).digest()[:8]

    def master(self, salt: bytes) -> bytes:
        if not self.passphrase:
            return self.secret
        return Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(self.secret)


def new_key() -> str:
    """A new key, as its file holds it (one line)."""
    return KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode() + "\n"


def read_key(path: Path) -> BackupKey:
    """The key in `path`: a `backup key-new` key, or else the file's text as a passphrase."""
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise BackupError(f"can't read the backup key {path}: {exc}") from exc
    if text.startswith(KEY_PREFIX):
        try:
            raw = base64.urlsafe_b64decode(text.removeprefix(KEY_PREFIX))
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise BackupError(f"{path} is not a whole backup key (schoolgate backup key-new)")
        return BackupKey(raw, passphrase=False)
    if len(text) < MIN_PASSPHRASE:
        raise BackupError(
            f"{path}: a passphrase must be at least {MIN_PASSPHRASE} characters "
            "(or use schoolgate backup key-new)"
        )
    return BackupKey(text.encode(), passphrase=True)


def _nonce(number: int, last: bool) -> bytes:
    return number.to_bytes(8, "big") + (b"\x01" if last else b"\x00") + bytes(3)


def _cipher(key: BackupKey, salt: bytes) -> AESGCM:
    info = b"schoolgate backup archive"
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info)
    return AESGCM(derived.derive(key.master(salt)))


class SealingWriter:
    """A write-only file that seals what is written to `out` (tarfile's "w|gz" writes here)."""

    def __init__(self, out: IO[bytes], key: BackupKey) -> None:
        salt = secrets.token_bytes(16)
        self.header = MAGIC + (b"P" if key.passphrase else b"K") + salt + key.key_id
        self.out, self.aead = out, _cipher(key, salt)
        self.buffer, self.number = bytearray(), 0
        out.write(self.header)

    def write(self, data: bytes) -> int:
        self.buffer += data
        while len(self.buffer) > RECORD:  # keep at least one byte back for the last record
            self._record(bytes(self.buffer[:RECORD]), last=False)
            del self.buffer[:RECORD]
        return len(data)

    def _record(self, chunk: bytes, *, last: bool) -> None:
        self.out.write(self.aead.encrypt(_nonce(self.number, last), chunk, self.header))
        self.number += 1

    def finish(self) -> None:
        """Seal the last record (possibly empty); nothing may be written after."""
        self._record(bytes(self.buffer), last=True)
        self.buffer.clear()


def is_sealed(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(MAGIC)) == MAGIC


def unseal(source: IO[bytes], key: BackupKey, out: IO[bytes], name: str) -> None:
    """Write the archive inside `source` to `out`, every record checked."""
    header = source.read(_HEADER)
    if len(header) < _HEADER or not header.startswith(MAGIC):
        raise BackupError(f"{name}: not a sealed Schoolgate backup")
    kind, salt, key_id = header[len(MAGIC) : len(MAGIC) + 1], header[-24:-8], header[-8:]
    if kind != (b"P" if key.passphrase else b"K"):
        made = "a passphrase" if kind == b"P" else "a key from schoolgate backup key-new"
        raise BackupError(f"{name} was sealed with {made}: give that one")
    if kind == b"K" and not hmac.compare_digest(key_id, key.key_id):
        raise BackupError(
            f"{name} was sealed with another key (id {key_id.hex()}; this key's is "
            f"{key.key_id.hex()})"
        )
    aead = _cipher(key, salt)
    number, record = 0, source.read(RECORD + TAG)
    while True:
        following = source.read(RECORD + TAG) if record else b""
        last = not following
        try:
            out.write(aead.decrypt(_nonce(number, last), record, header))
        except InvalidTag:
            raise BackupError(
                f"{name} is damaged or was changed (record {number} does not match its seal, "
                "or the archive was cut short); wrong passphrase?"
            ) from None
        if last:
            return
        number, record = number + 1, following


@contextlib.contextmanager
def opened(path: Path, key: BackupKey | None) -> Iterator[tuple[Path, bool]]:
    """The plain archive to read: unsealed into a private temporary folder (removed after),
    or `path` itself for an old unsealed archive. The flag says whether it was sealed."""
    try:
        sealed = is_sealed(path)
    except FileNotFoundError:
        raise BackupError(f"{path}: no such file") from None
    except OSError as exc:
        raise BackupError(f"{path}: {exc}") from exc
    if not sealed:
        yield path, False
        return
    if key is None:
        raise BackupError(
            f"{path} is sealed: give its key (--key-file, or SCHOOLGATE_BACKUP_KEY_FILE)"
        )
    with tempfile.TemporaryDirectory(prefix="schoolgate-unsealed-") as folder:
        plain = Path(folder) / path.name.removesuffix(".enc")
        fd = os.open(plain, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with path.open("rb") as source, os.fdopen(fd, "wb") as out:
            unseal(source, key, out, str(path))
        yield plain, True


__all__ = ["BackupKey", "SealingWriter", "new_key", "opened", "read_key", "unseal"]
