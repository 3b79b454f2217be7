"""Every mapped table, imported in one place so Alembic and the app see the same metadata."""

from .base import Base, UTCDateTime, new_id, utcnow
from .institutions import CATEGORIES, LICENCE_STATUSES, RISK_LEVELS, Institution
from .officers import ROLES, LoginFailure, Officer, RefreshToken
from .reference import Agency, CategoryDepartment, Department, Region, ViolationCategory

__all__ = [
    "Agency",
    "Base",
    "CATEGORIES",
    "CategoryDepartment",
    "Department",
    "Institution",
    "LICENCE_STATUSES",
    "LoginFailure",
    "Officer",
    "RISK_LEVELS",
    "ROLES",
    "RefreshToken",
    "Region",
    "UTCDateTime",
    "ViolationCategory",
    "new_id",
    "utcnow",
]
