"""The demo's cast: who has an account, in which department and region, with which certificate.

The story's merge depends on who is who (PROTOCOL §4 merges within one department), so the accounts are
declared once, here, and created in the demo's fresh database before the server starts. `create_cast` reads
`CAST` at call time, so a test can swap a person for one of another department.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from backend.casework.accounts import create_officer
from backend.core.db import Database
from backend.demo.scenario import DISTRICT

PASSWORD = "demo-password-2026"  # noqa: S105 - throwaway accounts in a temporary database


@dataclass(frozen=True)
class Person:
    """One account of the demo; `english` keeps the report readable for those who do not read Chinese."""

    username: str
    name: str
    english: str
    department: str
    region: str
    roles: tuple[str, ...]
    cert: str | None
    id: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} {self.english} ({self.department})"


CAST = (
    Person("admin", "系统管理员", "System Admin", "education", "330100", ("officer", "admin"), None),
    Person("zhang.min", "张敏", "Zhang Min", "education", DISTRICT, ("officer",), "ZJ330106-E-0007"),
    Person("wang.fang", "王芳", "Wang Fang", "education", DISTRICT, ("officer",), "ZJ330106-E-0021"),
    Person("li.qiang", "李强", "Li Qiang", "market", DISTRICT, ("officer",), "ZJ330106-M-0113"),
    Person("chen.jing", "陈静", "Chen Jing", "education", DISTRICT, ("custodian",), None),
    Person("zhou.hui", "周慧", "Zhou Hui", "education", DISTRICT, ("reviewer",), None),
)


def create_cast(db: Database) -> dict[str, Person]:
    """Create every account of `CAST` (certificates valid today); answers each person with their account id."""
    today = date.today()
    now = datetime.now(UTC)
    cast: dict[str, Person] = {}
    with db.transaction() as session:
        for p in CAST:
            officer = create_officer(
                session, username=p.username, password=PASSWORD, name=p.name, department=p.department,
                region=p.region, roles=list(p.roles), cert_number=p.cert,
                cert_valid_from=today - timedelta(days=400) if p.cert else None,
                cert_valid_until=today + timedelta(days=700) if p.cert else None, now=now)
            cast[p.username] = Person(**{**p.__dict__, "id": officer.id})
    return cast
