"""What the web layer is given to serve with: built once per process by the composition root (backend.bootstrap)."""

from __future__ import annotations

from dataclasses import dataclass

from backend.casework.tokens import TokenIssuer
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.uow import JobRunner
from backend.web.admission import Admission
from media.custody.keys import Signer
from media.settings import MediaSettings
from media.store import Store
from sync.applier import Applier


@dataclass
class AppState:
    settings: Settings
    db: Database
    issuer: TokenIssuer
    store: Store
    media: MediaSettings
    signer: Signer
    admission: Admission
    runner: JobRunner
    applier: Applier
