"""Campaigns: a region's focus on some violation categories for a stretch of dates.

A campaign is what draws and tasks may name: a draw weights institutions with
recent findings in its focus categories, and a task or draw planned under it
must fall within its region and dates (`campaign_for`). A city campaign runs
in every district.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.errors import Invalid, NotFound
from backend.core.jurisdiction import may_see_region, regions_of
from backend.core.models import Campaign, Officer, Region, ViolationCategory, new_id
from backend.core.paging import paginate
from backend.core.reference import CITY, is_city_level
from backend.core.times import utc_iso


def campaign_data(c: Campaign) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "region": c.region_code, "starts_on": c.starts_on.isoformat(),
            "ends_on": c.ends_on.isoformat(), "focus_categories": list(c.focus_categories or []),
            "description": c.description, "created_by": c.created_by, "created_at": utc_iso(c.created_at)}


def _campaign_visible(viewer: Officer, c: Campaign) -> bool:
    """A city campaign runs in every district, so every district sees it."""
    return is_city_level(c.region_code) or may_see_region(viewer, c.region_code)


def region_in_jurisdiction(session: Session, actor: Officer, region: str) -> None:
    """A region that exists and lies within the actor's jurisdiction, or `Invalid`."""
    if session.get(Region, region) is None:
        raise Invalid(f"unknown region {region!r}", errors={"region": ["unknown region"]})
    if not may_see_region(actor, region):
        raise Invalid("region is outside your jurisdiction", errors={"region": ["outside your jurisdiction"]})


def create_campaign(session: Session, actor: Officer, data: Mapping[str, Any], *, now: datetime) -> dict[str, Any]:
    region = data.get("region") or actor.region_code
    region_in_jurisdiction(session, actor, region)
    if data["ends_on"] < data["starts_on"]:
        raise Invalid("a campaign ends on or after its start", errors={"ends_on": ["before starts_on"]})
    focus = list(dict.fromkeys(data.get("focus_categories") or []))
    unknown = [c for c in focus if session.get(ViolationCategory, c) is None]
    if unknown:
        raise Invalid("unknown violation categories: " + ", ".join(unknown),
                      errors={"focus_categories": [f"unknown category {c!r}" for c in unknown]})
    campaign = Campaign(id=new_id("cmp"), name=data["name"].strip(), region_code=region, starts_on=data["starts_on"],
                        ends_on=data["ends_on"], focus_categories=focus, description=data.get("description") or "",
                        created_by=actor.id, created_at=now)
    session.add(campaign)
    session.flush()
    return campaign_data(campaign)


def _get_campaign(session: Session, viewer: Officer, campaign_id: str) -> Campaign:
    c = session.get(Campaign, campaign_id)
    if c is None or not _campaign_visible(viewer, c):
        raise NotFound(f"no campaign {campaign_id!r}")
    return c


def get_campaign(session: Session, viewer: Officer, campaign_id: str) -> dict[str, Any]:
    return campaign_data(_get_campaign(session, viewer, campaign_id))


def list_campaigns(session: Session, viewer: Officer, *, active_on: date | None = None, page: int = 1,
                   page_size: int = 50) -> tuple[list[dict[str, Any]], int]:
    stmt = select(Campaign)
    regions = regions_of(viewer)
    if regions is not None:
        stmt = stmt.where(Campaign.region_code.in_(sorted(regions | {CITY})))
    if active_on:
        stmt = stmt.where(Campaign.starts_on <= active_on, Campaign.ends_on >= active_on)
    rows, total = paginate(session, stmt, Campaign.starts_on.desc(), Campaign.id, page=page, page_size=page_size)
    return [campaign_data(c) for c in rows], total


def campaign_for(session: Session, actor: Officer, campaign_id: str | None, region: str,
                 planned: date) -> Campaign | None:
    """The campaign a task or draw names, if any: it must cover the region and the planned date."""
    if not campaign_id:
        return None
    c = _get_campaign(session, actor, campaign_id)
    if not (c.region_code == region or is_city_level(c.region_code)):
        raise Invalid(f"campaign {c.id} runs in {c.region_code}, not in {region}",
                      errors={"campaign_id": ["the campaign does not cover this region"]})
    if not c.starts_on <= planned <= c.ends_on:
        raise Invalid(f"the planned date {planned} is outside the campaign ({c.starts_on} to {c.ends_on})",
                      errors={"planned_date": ["outside the campaign's dates"]})
    return c
