"""The data keys personal data is sealed under, each stored only wrapped by the key-encryption key (issue 23)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.models.base import Base, UTCDateTime

DATA_KEY_PURPOSES = ("seal", "index")  # SM4-GCM sealing of values; HMAC-SM3 blind indexes


class DataKey(Base):
    """One data key: `wrapped` by the KEK named `kek_id` (backend.core.crypto.key_provider); `check` is HMAC-SM3
    of a fixed text under the key itself, so an unwrapped key is known to be this row's. Rotating the KEK rewrites
    `wrapped`, `kek_id` and `rewrapped_at`, never the key: the rows sealed under it are not touched.

    (purpose, generation) is unique: two processes making the first key of a purpose at once cannot both keep it.
    """

    __tablename__ = "data_keys"
    __table_args__ = (UniqueConstraint("purpose", "generation"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    purpose: Mapped[str] = mapped_column(String(16))
    generation: Mapped[int] = mapped_column(Integer)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    kek_id: Mapped[str] = mapped_column(String(64))
    check: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    rewrapped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
