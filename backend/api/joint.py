"""Placeholder: being built (issue 6)."""

from __future__ import annotations

from .blueprint import Blueprint

blp = Blueprint("joint", __name__, url_prefix="/api/v1", description="joint")
