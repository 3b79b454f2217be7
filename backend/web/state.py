"""What the web layer is given to serve with: built once per process by the composition root (backend.bootstrap)."""

from __future__ import annotations

from dataclasses import dataclass, field

from backend.casework.tokens import TokenIssuer
from backend.core.build import BuildInfo
from backend.core.config import Settings
from backend.core.crypto.data_keys import KeyRing
from backend.core.db import Database
from backend.core.times import Clock
from backend.core.uow import JobRunner
from backend.web.admission import Admission
from backend.web.metrics import NO_METRICS, WebObserver
from backend.web.readiness import Readiness
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
    clock: Clock  # read once per request (`backend.web.api.context.now`) and passed down as `now`
    keys: KeyRing  # the data keys personal data is sealed under: given to the domain functions that seal or open
    # Health and metrics (backend/web/api/health.py, backend/web/metrics.py): the dependency checks, what hears of
    # requests, pushes and 503s, and the running build.
    readiness: Readiness = field(default_factory=lambda: Readiness(()))
    observer: WebObserver = NO_METRICS
    build: BuildInfo = field(default_factory=lambda: BuildInfo("0+unknown", None, "unknown"))
