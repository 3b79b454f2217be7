"""Placeholder: being built (issue 5)."""

from __future__ import annotations

from .blueprint import Blueprint

blp = Blueprint("audit", __name__, url_prefix="/api/v1", description="audit")
