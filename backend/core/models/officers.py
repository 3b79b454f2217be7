"""Officers (every user is one: custodians and reviewers too) and their login state."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.models.base import Base, UTCDateTime, utcnow

ROLES = ("officer", "custodian", "reviewer", "legal_reviewer", "admin")


class Officer(Base):
    __tablename__ = "officers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(256))
    department_code: Mapped[str] = mapped_column(ForeignKey("departments.code"))
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The law-enforcement certificate (执法证); whether it holds on a day is sync.certificates' rule.
    cert_number: Mapped[str | None] = mapped_column(String(32), unique=True)
    cert_valid_from: Mapped[date | None] = mapped_column(Date)
    cert_valid_until: Mapped[date | None] = mapped_column(Date)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def has_role(self, *roles: str) -> bool:
        return any(r in self.roles for r in roles)


class OfficerCertificate(Base):
    """Every law-enforcement certificate an officer has held, one row per change (issue 15).

    The officers row holds today's certificate; a renewal overwrites it. An evidence list or an audit of an
    inspection judges the certificate held on the day of the act, so what was overwritten is kept here:
    `sync.certificate_history` writes a row whenever the certificate changes and picks the one of a day.
    """

    __tablename__ = "officer_certificates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    officer_id: Mapped[str] = mapped_column(ForeignKey("officers.id"), index=True)
    # The same names as the officers row's, so sync.certificates' rule reads either.
    cert_number: Mapped[str] = mapped_column(String(32))
    cert_valid_from: Mapped[date | None] = mapped_column(Date)
    cert_valid_until: Mapped[date | None] = mapped_column(Date)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_by: Mapped[str | None] = mapped_column(String(40))  # the admin's id; None from the CLI or a migration


class RefreshToken(Base):
    """One-use refresh tokens; a family is every token descended from one login."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(String(40), index=True)
    officer_id: Mapped[str] = mapped_column(ForeignKey("officers.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LoginFailure(Base):
    """Failed logins, one row each, counted by username and address (the growing wait) and by address (the
    ceiling) in `backend.web.auth`; kept in the database so every process sees them."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_username_at", "username", "at"),
        Index("ix_login_failures_address_at", "address", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
