"""Every mapped table, imported in one place so Alembic and the app see the same metadata."""

from backend.core.models.audit import AuditReview
from backend.core.models.audit_runs import AuditRun
from backend.core.models.base import Base, UTCDateTime, new_id, utcnow
from backend.core.models.cases import (
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
from backend.core.models.corrections import CORRECTION_SOURCES, CORRECTION_SUBJECTS, Correction
from backend.core.models.custody import (
    CustodyEvent,
    CustodyHolder,
    HeadTimestamp,
    MerkleNode,
    SmHeadTimestamp,
    SmMerkleNode,
    SmTreeHead,
    TreeHead,
    WitnessCosignature,
)
from backend.core.models.feed import Change
from backend.core.models.institutions import CATEGORIES, LICENCE_STATUSES, RISK_LEVELS, Institution
from backend.core.models.keys import DATA_KEY_PURPOSES, DataKey
from backend.core.models.lifecycle import CaseTransition
from backend.core.models.officers import ROLES, LoginFailure, Officer, OfficerCertificate, RefreshToken
from backend.core.models.personal_data import ComplainantUnmasking
from backend.core.models.reference import Agency, CategoryDepartment, Department, Region, ViolationCategory
from backend.core.models.sync import ZERO_HASH, ChainGap, DeferredRecord, Device, LedgerRecord, QuarantinedRecord
from backend.core.models.workflow import (
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
    "AuditRun",
    "CASE_STATUSES",
    "CLOSED_STATUSES",
    "Case",
    "CaseAlias",
    "CaseConflict",
    "CaseHistory",
    "CaseTransition",
    "ChainGap",
    "Change",
    "CORRECTION_SOURCES",
    "CORRECTION_SUBJECTS",
    "Correction",
    "DATA_KEY_PURPOSES",
    "DataKey",
    "CustodyEvent",
    "CustodyHolder",
    "HeadTimestamp",
    "MerkleNode",
    "SmHeadTimestamp",
    "SmMerkleNode",
    "SmTreeHead",
    "TreeHead",
    "WitnessCosignature",
    "Clue",
    "ComplainantUnmasking",
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
    "OfficerCertificate",
    "RefreshToken",
    "Region",
    "UTCDateTime",
    "ViolationCategory",
    "new_id",
    "utcnow",
]
