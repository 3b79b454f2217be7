"""What the phone checks before it signs, the refusal an officer can act on, and the override that signs anyway.

A signed record cannot be taken back: the server ledgers it for good, and a wrong credit code, a made-up category
or an inspection without two certified officers is found only later, at the desk, when the officer has left. So
the phone checks what it can know in the field before it signs (docs/protocol.md, "Checks before signing"):

- ``case.open`` and ``clue.report``: the institution's credit code against GB 32100-2015 (``sync.credit_code``,
  the server's own rule) and its region code against the reference data;
- ``inspection.finding``: the category against the violation catalogue;
- ``inspection.start``: every officer present holds a certificate valid on the local date of the record
  (``sync.certificates``, the server's own rule), and at least two do (行政处罚法 第四十二条).

Each problem says, in Chinese and English, what to do about it. A check the phone cannot make (no reference data
yet) is reported as such and does not refuse. The officer may still sign over the problems with a reason
(``override``): the record then carries ``override: {"codes", "reason"}``, and the server flags it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sync.certificates import EXPIRED, NOT_YET_VALID, certificate_fault
from sync.client import reference
from sync.client.outbox import Outbox
from sync.client.reference import Reference
from sync.client.wire import SHANGHAI
from sync.credit_code import credit_code_fault, normalise_credit_code

log = logging.getLogger("fieldcase.phone")

MAX_REASON = 500
INSTITUTION_TYPES = ("case.open", "clue.report")
CHECKED_TYPES = (*INSTITUTION_TYPES, "inspection.finding", "inspection.start", "record.correct")
_CERTIFICATE_CODES = {EXPIRED: "certificate_expired", NOT_YET_VALID: "certificate_not_yet_valid"}


@dataclass(frozen=True)
class Problem:
    """One reason not to sign: ``code`` (what an override names), what it is about, and what to do, in both
    languages."""

    code: str
    subject: str
    message_zh: str
    message_en: str

    def __str__(self) -> str:
        return f"{self.message_zh} / {self.message_en}"


@dataclass(frozen=True)
class Unchecked:
    """A check the phone could not make (``check``: ``region``, ``category`` or ``certificates``), and why."""

    check: str
    message_zh: str
    message_en: str

    def __str__(self) -> str:
        return f"{self.message_zh} / {self.message_en}"


@dataclass(frozen=True)
class CheckReport:
    """What checking one record found; ``reference_fetched_at`` is when the data it used was fetched."""

    type: str
    problems: list[Problem] = field(default_factory=list)
    unchecked: list[Unchecked] = field(default_factory=list)
    reference_fetched_at: str | None = None

    @property
    def ok(self) -> bool:
        """Nothing refuses the record (checks that could not be made do not)."""
        return not self.problems

    @property
    def codes(self) -> list[str]:
        """The distinct problem codes, in the order found."""
        return list(dict.fromkeys(p.code for p in self.problems))


class RecordRefused(Exception):
    """The phone will not sign the record as it stands: ``problems`` says why; ``report`` is the whole check.

    Put the record right and sign again, or sign over the problems with ``override="reason"``.
    """

    def __init__(self, report: CheckReport, problems: Sequence[Problem]) -> None:
        self.report = report
        self.problems = list(problems)
        lines = "\n".join(f"- [{p.code}] {p}" for p in self.problems)
        super().__init__(f"{report.type} not signed:\n{lines}")


@dataclass(frozen=True)
class Override:
    """The officer's decision to sign over problems: ``reason`` always; ``codes`` to name the ones acknowledged
    (None: every problem the check finds)."""

    reason: str
    codes: Sequence[str] | None = None

    @classmethod
    def of(cls, value: str | Override | Mapping[str, Any]) -> Override:
        if isinstance(value, Override):
            found = value
        elif isinstance(value, str):
            found = cls(value)
        else:
            found = cls(str(value.get("reason") or ""), value.get("codes"))
        if not found.reason.strip() or len(found.reason) > MAX_REASON:
            raise ValueError(f"an override needs a reason of 1 to {MAX_REASON} characters")
        return found


def _no_reference(check: str, what_zh: str, what_en: str) -> Unchecked:
    return Unchecked(check, f"本机没有参考数据，未能核对{what_zh}；请联网下载参考数据",
                     f"no reference data on this phone: {what_en} could not be checked; connect once to download it")


def _day(at: str) -> date:
    """The local (Hangzhou) date of a record's ``at``: the day a certificate must be valid on."""
    return datetime.fromisoformat(at).astimezone(SHANGHAI).date()


def _credit_code(code: str) -> Problem | None:
    fault = credit_code_fault(normalise_credit_code(code))
    if fault is None:
        return None
    subject = "institution.credit_code"
    if fault.kind == "length":
        return Problem("bad_credit_code", subject,
                       f"统一社会信用代码应为18位，现为{fault.length}位，请核对营业执照",
                       f"the unified social credit code has {fault.length} characters, not 18: check the business "
                       "licence")
    if fault.kind == "characters":
        return Problem("bad_credit_code", subject,
                       f"统一社会信用代码含有不使用的字符 {fault.characters}"
                       "（代码中没有 I、O、S、V、Z），请核对营业执照",
                       f"the credit code contains {fault.characters}, which codes never use (no I, O, S, V or Z): "
                       "check the business licence")
    return Problem("bad_credit_code", subject,
                   f"统一社会信用代码第18位校验码应为 {fault.expected}（现为 {fault.found}），请核对营业执照",
                   f"the 18th character (the check character) should be {fault.expected}, not {fault.found}: "
                   "check the business licence")


def _institution(body: Mapping[str, Any], ref: Reference | None, report: CheckReport) -> None:
    inst = body.get("institution")
    if not isinstance(inst, Mapping) or "id" in inst:
        return  # a registry id: the server knows it, the phone need not
    if inst.get("credit_code") and (problem := _credit_code(str(inst["credit_code"]))):
        report.problems.append(problem)
    region = inst.get("region")
    if ref is None:
        report.unchecked.append(_no_reference("region", "区划代码", "the region code"))
    elif region not in ref.regions:
        report.problems.append(Problem("unknown_region", "institution.region",
                                       f"区划代码 {region} 不在参考数据中，请从列表中选择所在区县",
                                       f"region code {region} is not in the reference data: choose the district "
                                       "from the list"))


def _category(body: Mapping[str, Any], ref: Reference | None, report: CheckReport) -> None:
    category = body.get("category")
    if ref is None:
        report.unchecked.append(_no_reference("category", "违法类别", "the violation category"))
    elif category not in ref.categories:
        report.problems.append(Problem("unknown_category", "category",
                                       f"违法类别 {category} 不在违法行为目录中，请从目录中选择",
                                       f"violation category {category} is not in the catalogue: choose one from the "
                                       "list"))


def _certificate_problem(officer_id: str, officer: Mapping[str, Any] | None, day: date) -> Problem | None:
    if officer is None:
        return Problem("unknown_officer", officer_id,
                       f"执法人员 {officer_id} 不在本机参考数据中（非本辖区、已停用或数据过旧），"
                       "请联网更新参考数据或核实在场人员",
                       f"officer {officer_id} is not in this phone's reference data (another jurisdiction, "
                       "deactivated, or the data is old): update it online or check who is present")
    cert = officer.get("certificate") or {}
    name, number = officer.get("name") or officer_id, cert.get("number")
    start, until = (date.fromisoformat(v) if v else None for v in (cert.get("valid_from"), cert.get("valid_until")))
    fault = certificate_fault(number, start, until, day)
    if fault is None:
        return None
    if fault == EXPIRED:
        zh = f"{name} 的执法证（{number}）已于 {until} 过期，请由持有效执法证的人员参加检查"
        en = f"{name}'s certificate {number} expired on {until}: an officer with a valid certificate must take part"
    elif fault == NOT_YET_VALID:
        zh = f"{name} 的执法证（{number}）自 {start} 起才生效，{day} 尚不能执法"
        en = f"{name}'s certificate {number} is valid only from {start}, not on {day}"
    else:
        zh = f"{name} 没有执法证，不能作为执法人员参加检查"
        en = f"{name} holds no law-enforcement certificate and cannot inspect as an officer"
    return Problem(_CERTIFICATE_CODES.get(fault, fault), officer_id, zh, en)


def _crew(body: Mapping[str, Any], at: str, ref: Reference | None, report: CheckReport) -> None:
    if ref is None or ref.officers is None:
        report.unchecked.append(_no_reference("certificates", "执法人员及其执法证", "the officers' certificates"))
        return
    day = _day(at)
    present = list(dict.fromkeys(str(o) for o in body.get("officers") or []))
    certified = 0
    for officer_id in present:
        problem = _certificate_problem(officer_id, ref.officers.get(officer_id), day)
        if problem is None:
            certified += 1
        else:
            report.problems.append(problem)
    if certified < 2:
        report.problems.append(Problem("fewer_than_two_certified", "officers",
                                       f"在场持有效执法证的执法人员只有 {certified} 名；"
                                       "行政检查须有两名以上持证执法人员（《行政处罚法》第四十二条）",
                                       f"only {certified} officer(s) with a valid certificate present: an "
                                       "administrative inspection needs at least two (Administrative Penalty Law, "
                                       "art. 42)"))


def check(type_: str, body: Mapping[str, Any], at: str, ref: Reference | None) -> CheckReport:
    """Check one record before it is signed; ``at`` is its RFC 3339 time, ``ref`` the cached reference data."""
    report = CheckReport(type_, reference_fetched_at=ref.fetched_at if ref is not None else None)
    if type_ in INSTITUTION_TYPES:
        _institution(body, ref, report)
    elif type_ == "inspection.finding":
        _category(body, ref, report)
    elif type_ == "inspection.start":
        _crew(body, at, ref, report)
    elif type_ == "record.correct":  # a correction is checked as the record it corrects would have been
        fields = body.get("fields") or {}
        if "institution" in fields:
            _institution({"institution": fields["institution"]}, ref, report)
        if "category" in fields:
            _category({"category": fields["category"]}, ref, report)
    return report


def settle(report: CheckReport, override: str | Override | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``override`` the record is to carry (None: nothing to override), or :class:`RecordRefused`.

    An override acknowledges every problem found, or only the ``codes`` it names: a problem it does not name
    still refuses. It is written into the record only when it overrides something.
    """
    if override is None:
        if report.problems:
            raise RecordRefused(report, report.problems)
        return None
    decided = Override.of(override)
    acknowledged = set(report.codes if decided.codes is None else decided.codes)
    left = [p for p in report.problems if p.code not in acknowledged]
    if left:
        raise RecordRefused(report, left)
    if not report.problems:
        return None
    return {"codes": report.codes, "reason": decided.reason}


class Checker:
    """The phone's check before every signature, against the reference data cached in its outbox.

    The chain calls it for each record it is about to sign; ``last`` keeps the latest report, so an app can show
    what could not be checked for a record that was signed.
    """

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._cached: tuple[str | None, Reference | None] = (None, None)
        self.last: CheckReport | None = None

    def reference(self) -> Reference | None:
        """The cached reference data (parsed once per download), or None."""
        text = self._outbox.get(reference.META_KEY)
        if text != self._cached[0]:
            self._cached = (text, reference.load(self._outbox))
        return self._cached[1]

    def check(self, type_: str, body: Mapping[str, Any], at: str) -> CheckReport:
        """Check a record without signing it."""
        return check(type_, body, at, self.reference() if type_ in CHECKED_TYPES else None)

    def __call__(self, type_: str, body: Mapping[str, Any], at: str,
                 override: str | Override | Mapping[str, Any] | None) -> dict[str, Any] | None:
        """Before signing: the override the record carries, or :class:`RecordRefused`."""
        report = self.last = self.check(type_, body, at)
        for unchecked in report.unchecked:
            log.warning("%s signed without checking %s: %s", type_, unchecked.check, unchecked)
        return settle(report, override)
