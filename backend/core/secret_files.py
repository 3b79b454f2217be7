"""The secret files a deployment reads, and who may make them.

One host on SQLite (the embedded default: the demo, README's first command) makes each key on first use, so there
is nothing to set up. A deployment on a shared database runs several hosts, and if each made its own keys on first
use they would disagree without a word: tokens signed by one host refused by the others, custody tree heads signed
under several keys, console sessions valid on one host only. There the keys are made once, by an explicit
`fieldcase init-secrets`, and copied to every host (docs/deployment.md); a host that lacks one refuses to start,
naming the file and the variable that points at it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.core.config import secret_file
from backend.core.crypto import SM
from backend.core.crypto.key_provider import FileKeyProvider
from backend.core.crypto.sealing import KEY_BYTES as KEK_BYTES
from backend.core.variables import SettingsError

CONSOLE_KEY = "console-session.key"  # the review console's session key, in the instance folder


@dataclass(frozen=True)
class SecretFile:
    name: str  # jwt, custody, console, custody_sm
    variable: str  # the setting that says where it is
    path: Path
    nbytes: int
    purpose: str
    make: Callable[[], bytes] | None = None  # how a new one is made, when not `nbytes` random bytes


def secret_files(settings: Any) -> list[SecretFile]:
    """Every secret file of `settings` (backend.core.config.Settings). The custody key is an Ed25519 seed
    (media.custody.keys reads its first 32 bytes)."""
    return [
        SecretFile("jwt", "FIELDCASE_JWT_SECRET_FILE", Path(settings.jwt_secret_path), 64, "signs access tokens"),
        SecretFile("custody", "FIELDCASE_CUSTODY_KEY_FILE", Path(settings.custody_key_path), 32,
                   "signs custody tree heads"),
        SecretFile("console", "FIELDCASE_INSTANCE_DIR", Path(settings.instance_dir) / CONSOLE_KEY, 32,
                   "signs review-console sessions"),
        SecretFile("kek", "FIELDCASE_KEK_FILE", Path(settings.kek_path), KEK_BYTES,
                   "wraps the data keys personal data is sealed under"),
        *_sm_custody(settings),
    ]


SM2_KEY_BYTES = 32 + 65  # the SM2 custody key file: the private key, then the public key (uncompressed point)


def new_sm2_key() -> bytes:
    private, public = SM.generate()
    return private + public


def _sm_custody(settings: Any) -> list[SecretFile]:
    """The SM tree's head key (media.custody.keys.SmSigner), only where FIELDCASE_CUSTODY_SUITES has `sm`: a
    deployment that keeps the intl tree alone needs no SM2 key."""
    if "sm" not in getattr(settings, "custody_suites", ("intl",)):
        return []
    return [SecretFile("custody_sm", "FIELDCASE_CUSTODY_SM_KEY_FILE", Path(settings.custody_sm_key_path),
                       SM2_KEY_BYTES, "signs the SM tree's custody heads (SM2)", make=new_sm2_key)]


def kek_provider(settings: Any) -> FileKeyProvider:
    """The key-encryption key's provider, from FIELDCASE_KEK_FILE: made on first use where `generates_secrets`
    allows it, refused when missing elsewhere or open to the group or others (backend.core.crypto.key_provider)."""
    read_secret(settings, "kek")
    return FileKeyProvider(Path(settings.kek_path))


def generates_secrets(settings: Any) -> bool:
    """Whether a missing key may be made on first use: only on SQLite, where there is one host."""
    return str(settings.database_url).startswith("sqlite")


def missing_secrets(settings: Any) -> list[str]:
    """One line per secret file this configuration must find but does not (none on SQLite)."""
    if generates_secrets(settings):
        return []
    return [f"{s.variable}: the secret file {s.path} ({s.purpose}) does not exist; a deployment on a shared "
            "database does not make its keys itself: run `fieldcase init-secrets` once and copy the files to "
            "every host" for s in secret_files(settings) if not s.path.exists()]


def require_secrets(settings: Any) -> None:
    """Refuse to start (SettingsError) when a secret file is missing and this configuration may not make it."""
    missing = missing_secrets(settings)
    if missing:
        raise SettingsError(missing)


def read_secret(settings: Any, name: str) -> bytes:
    """The secret `name` (jwt, custody, console): made on first use only where `generates_secrets` allows it."""
    entry = next(s for s in secret_files(settings) if s.name == name)
    return secret_file(entry.path, entry.nbytes, create=generates_secrets(settings), make=entry.make)


def init_secrets(settings: Any) -> list[tuple[SecretFile, bool]]:
    """Make every secret file that does not exist yet (0600); never replace one. Returns each with whether it
    was made now."""
    made = []
    for entry in secret_files(settings):
        existed = entry.path.exists()
        secret_file(entry.path, entry.nbytes, create=True, make=entry.make)
        made.append((entry, not existed))
    return made
