"""What one running app holds: settings, database, token issuer. Built once per process."""

from __future__ import annotations

from dataclasses import dataclass

from .config import Settings, instance_secret
from .db import Database
from .tokens import TokenIssuer


@dataclass
class AppState:
    settings: Settings
    db: Database
    issuer: TokenIssuer

    @classmethod
    def build(cls, settings: Settings) -> AppState:
        secret = instance_secret(settings.instance_dir, "jwt-secret.key", 64)
        issuer = TokenIssuer(secret=secret, algorithm=settings.jwt_algorithm,
                             access_ttl=settings.access_token_ttl, refresh_ttl=settings.refresh_token_ttl)
        return cls(settings=settings, db=Database(settings.database_url), issuer=issuer)
