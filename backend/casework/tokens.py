"""Access JWTs and one-use refresh tokens with family revocation (PROTOCOL §1)."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from backend.core.crypto import digests
from backend.core.crypto.jwt_sm3 import HSM3, codec
from backend.core.errors import Unauthorized
from backend.core.models import Officer, RefreshToken, new_id

# HMAC for the tokens we mint ourselves; the list is what decoding accepts, nothing else. HSM3 is HMAC-SM3, the
# `sm` suite's (FIELDCASE_TOKEN_SUITE=sm: backend.core.crypto.jwt_sm3).
ALLOWED_ALGORITHMS = ("HS256", "HS384", "HS512", HSM3)


def algorithm_for(suite: str, intl_algorithm: str = "HS256") -> str:
    """The token algorithm of a suite: `intl_algorithm` (HS256) for intl, HMAC-SM3 for sm."""
    if suite == "sm":
        return HSM3
    if suite == "intl":
        return intl_algorithm
    raise ValueError(f"unknown token suite {suite!r}: intl or sm")


@dataclass(frozen=True)
class TokenIssuer:
    secret: bytes
    algorithm: str = "HS256"
    access_ttl: int = 900
    refresh_ttl: int = 30 * 24 * 3600
    issuer: str = "fieldcase"
    # Signs and verifies with `algorithm` alone (HSM3 registered on it, not on PyJWT's global codec).
    _codec: jwt.PyJWT = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.algorithm not in ALLOWED_ALGORITHMS:
            raise ValueError(f"unsupported token algorithm {self.algorithm!r}")
        if len(self.secret) < 32:
            raise ValueError("token secret must be at least 32 bytes")
        object.__setattr__(self, "_codec", codec(self.algorithm))

    def access_token(self, officer: Officer, *, now: datetime) -> str:
        claims = {
            "iss": self.issuer,
            "sub": officer.id,
            "roles": list(officer.roles),
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=self.access_ttl)).timestamp()),
            "jti": uuid.uuid4().hex,
        }
        return self._codec.encode(claims, self.secret, algorithm=self.algorithm, headers={"typ": "JWT"})

    def decode_access(self, token: str, *, now: datetime) -> dict[str, Any]:
        """The claims of a token we minted that is valid at `now`. The times are judged here, against the
        caller's clock, not by PyJWT against the wall clock."""
        try:
            claims = self._codec.decode(
                token, self.secret, algorithms=[self.algorithm], issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "jti", "iss"], "verify_exp": False, "verify_iat": False,
                         "verify_nbf": False},
            )
            issued, expires = int(claims["iat"]), int(claims["exp"])
        except (jwt.PyJWTError, TypeError, ValueError, OverflowError):
            raise Unauthorized("invalid access token") from None
        at = now.timestamp()
        if issued > at or int(claims.get("nbf", issued)) > at:
            raise Unauthorized("invalid access token")
        if expires <= at:
            raise Unauthorized("access token expired")
        return claims


def digest(token: str) -> str:
    """How a refresh token is stored and looked up: only its hash is kept, so a leaked table signs no one in.

    Public because the console finds the row of the pair a sign-in just
    issued (its server-side session handle) by the same rule, not a copy of it.
    """
    return digests.sha256_hex(token.encode())


def issue_pair(session: Session, issuer: TokenIssuer, officer: Officer, *, now: datetime,
               family_id: str | None = None) -> dict[str, Any]:
    refresh = secrets.token_urlsafe(32)
    session.add(RefreshToken(
        token_hash=digest(refresh), family_id=family_id or new_id("fam"), officer_id=officer.id,
        created_at=now, expires_at=now + timedelta(seconds=issuer.refresh_ttl),
    ))
    session.flush()
    return {
        "access_token": issuer.access_token(officer, now=now),
        "refresh_token": refresh,
        "token_type": "Bearer",
        "expires_in": issuer.access_ttl,
    }


def rotate_refresh(session: Session, issuer: TokenIssuer, presented: str, *, now: datetime) -> dict[str, Any]:
    """Spend a refresh token for a new pair.

    A reused token revokes its whole family and is refused with
    `commit_first`: the edge commits the revocation before it answers 401,
    so the refusal cannot roll it back.
    """
    row = session.scalars(select(RefreshToken).where(RefreshToken.token_hash == digest(presented))).first()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise Unauthorized("invalid refresh token")
    # Conditional update: of two racing presentations only one can win.
    spent = session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == row.id, RefreshToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not spent:
        revoke_family(session, row.family_id, now=now)
        raise Unauthorized("refresh token reused; its session has been revoked", commit_first=True)
    officer = session.get(Officer, row.officer_id)
    if officer is None or not officer.active:
        raise Unauthorized("invalid refresh token")
    return issue_pair(session, issuer, officer, now=now, family_id=row.family_id)


def revoke_family(session: Session, family_id: str, *, now: datetime) -> None:
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )


def revoke_all_for_officer(session: Session, officer_id: str, *, now: datetime) -> None:
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.officer_id == officer_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
