"""Limits for evidence handling, kept free of app imports so workers and benches can load them alone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class MediaSettings:
    upload_deadline: timedelta = timedelta(hours=24)
    time_tolerance: timedelta = timedelta(minutes=2)
    distance_tolerance_m: float = 200.0
    max_pixels: int = 64_000_000
