"""Every mapped table, imported in one place so Alembic and the app see the same metadata."""

from .audit import AuditReview
from .base import Base, UTCDateTime, new_id, utcnow
from .cases import (
    CASE_STATUSES,
    CLOSED_STATUSES,
    OPEN_STATUSES,
    Case,
    CaseAlias,
    CaseConflict,
    CaseHistory,
    Clue,
    Evidence,
    Finding,
    Inspection,
    RecordingInterruption,
    Upload,
)
from .custody import CustodyEvent, CustodyHolder, MerkleNode, TreeHead
from .feed import Change
from .institutions import CATEGORIES, LICENCE_STATUSES, RISK_LEVELS, Institution
from .lifecycle import CaseTransition
from .officers import ROLES, LoginFailure, Officer, RefreshToken
from .reference import Agency, CategoryDepartment, Department, Region, ViolationCategory
from .sync import ZERO_HASH, ChainGap, DeferredRecord, Device, LedgerRecord, QuarantinedRecord
from .workflow import (
    TASK_STATUSES,
    TRANSFER_STATUSES,
    TRANSFER_TARGETS,
    Campaign,
    CaseDepartment,
    DiscretionBenchmark,
    Draw,
    Task,
    Transfer,
)

__all__ = [
    "Campaign",
    "CaseDepartment",
    "DiscretionBenchmark",
    "Draw",
    "TASK_STATUSES",
    "TRANSFER_STATUSES",
    "TRANSFER_TARGETS",
    "Task",
    "Transfer",
    "AuditReview",
    "CASE_STATUSES",
    "CLOSED_STATUSES",
    "Case",
    "CaseAlias",
    "CaseConflict",
    "CaseHistory",
    "CaseTransition",
    "ChainGap",
    "Change",
    "CustodyEvent",
    "CustodyHolder",
    "MerkleNode",
    "TreeHead",
    "Clue",
    "DeferredRecord",
    "Device",
    "Evidence",
    "Finding",
    "Inspection",
    "LedgerRecord",
    "OPEN_STATUSES",
    "QuarantinedRecord",
    "RecordingInterruption",
    "Upload",
    "ZERO_HASH",
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
