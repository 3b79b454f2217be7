"""Schemathesis against our own OpenAPI document, in-process (issue 7).

Every operation of /api/v1/openapi.json gets a bounded number of generated requests, valid and invalid
(schemathesis' positive and negative modes), sent through the WSGI app with the token of an officer whose
role suits the operation (its `x-roles`), sometimes with none, and with path parameters that sometimes
name real objects (a case pushed by a phone, its inspection and evidence, an institution, a clue, a device,
an officer) so requests get past the lookups into the domain code. Every answer must:

- not be a server error (no 500 anywhere, for any input);
- have a status the operation documents. The published document keeps `default` (the error shape for
  anything else), which would make that check pass vacuously, so the copy tested here drops it: every
  status the server really answers must be listed (backend/web/api/blueprint.py lists the shared ones);
- have a documented content type, a body that validates against the documented schema, documented headers;
- be PROTOCOL's JSON error shape when it is an error (`json_error_shape` below);
- and invalid input must be refused with a 4xx (negative_data_rejection).

Bounded for CI (a couple of minutes on two cores): FIELDCASE_FUZZ_EXAMPLES examples per operation
(default 25), derandomized so a run is reproducible. Run it longer or with a fresh seed locally, e.g.
`FIELDCASE_FUZZ_EXAMPLES=200 FIELDCASE_FUZZ_SEED=$RANDOM pytest tests/web/test_api_schema_fuzz.py`.
"""

from __future__ import annotations

import copy
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from backend.web.api.context import ROLES_EXTENSION
from tests.phones import TestPhone

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("FIELDCASE_FUZZ_EXAMPLES", "25"))
SEED = os.environ.get("FIELDCASE_FUZZ_SEED")  # unset: derandomized, the same requests on every run
REPORT = bool(os.environ.get("FIELDCASE_FUZZ_REPORT"))  # print the statuses each operation answered

# One officer per role (PROTOCOL §1). The admin sits at the city level, as admins do in the other tests.
ROLES: dict[str, dict[str, Any]] = {
    "officer": {"roles": ("officer",)},
    "custodian": {"roles": ("custodian",)},
    "reviewer": {"roles": ("reviewer",)},
    "legal_reviewer": {"roles": ("legal_reviewer",)},
    "admin": {"roles": ("officer", "admin"), "region": "330100"},
}
ANONYMOUS = "anonymous"

# Every operation is fuzzed; none needs excluding (both binary ones were tried: the PUT below gets an open
# upload to write into, the package ZIP is checked for its status, roles and content type). Add an operation
# here only with the reason it cannot be fuzzed meaningfully.
EXCLUDED: set[str] = set()

CENTRE = {"name": "启航学科辅导中心", "region": "330106", "address": "西湖区文三路 100 号"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, negative_data_rejection]


@schemathesis.check
def json_error_shape(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """PROTOCOL: every error is JSON `{code, status, message, errors?}`, never an HTML page or a bare status."""
    if response.status_code < 400:
        return None
    if case.method.upper() == "HEAD":
        return None  # a HEAD answer has no body to check (RFC 9110 §9.3.2); its status is checked like any other
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith("application/json"), f"error answered as {content_type!r}: {response.text[:200]}"
    body = response.json()
    assert isinstance(body, dict), body
    assert set(body) <= {"code", "status", "message", "errors"}, f"unexpected keys in {body}"
    assert body.get("code") == response.status_code, body
    assert body.get("status") == HTTPStatus(response.status_code).phrase, body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert isinstance(body.get("errors", {}), dict), body
    return None


def _strict(document: dict[str, Any]) -> dict[str, Any]:
    """The published document without `default` responses, so every status answered must be documented."""
    strict = copy.deepcopy(document)
    for item in strict["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].pop("default", None)
    return strict


class World:
    """Officers of every role with their tokens, and a little real data for path parameters to hit."""

    def __init__(self, client, officers) -> None:
        self.people = {role: officers.make(**spec) for role, spec in ROLES.items()}
        self.headers = {role: officers.headers(officer) for role, officer in self.people.items()}
        self.headers[ANONYMOUS] = {}
        self.answered: dict[str, Counter[int]] = defaultdict(Counter)
        officer = self.people["officer"]
        phone = TestPhone(client, officer, self.headers["officer"])
        client_case_id, opened = phone.open_case(CENTRE)
        inspection_id, started = phone.start(client_case_id, [officer.id])
        evidence_id, captured = phone.evidence(inspection_id)
        results = phone.push([opened, started, captured, phone.end(inspection_id)])["results"]
        assert [r["status"] for r in results] == ["applied"] * 4, results
        # An open upload, so PUT .../content with a real id gets to the Content-Range handling.
        plan = client.post(f"/api/v1/evidence/{evidence_id}/uploads", headers=self.headers["officer"])
        assert plan.status_code == 200, plan.json
        institution = client.post("/api/v1/institutions", json={"name": "西湖区明德培训学校", "region": "330106"},
                                  headers=self.headers["admin"])
        assert institution.status_code == 201, institution.json
        clue = client.post("/api/v1/clues", json={"source": "hotline", "institution": CENTRE,
                                                   "description": "居民楼内开展无证学科培训"},
                           headers=self.headers["officer"])
        assert clue.status_code == 201, clue.json
        bystander = officers.make()  # the officer_id fuzzed requests may edit or deactivate
        self.ids = {"case_id": results[0]["refs"]["case_id"], "inspection_id": inspection_id,
                    "evidence_id": evidence_id, "institution_id": institution.json["id"],
                    "device_id": phone.device_id, "officer_id": bystander.id, "clue_id": clue.json["id"],
                    "code": clue.json["tracking_code"], "department": "education"}

    def roles_for(self, raw: dict[str, Any]) -> list[str]:
        """Mostly a role the operation admits, sometimes another or none, so 401 and 403 answers are checked too.

        Where any officer may call, mostly the officer: the seeded case, evidence and upload are theirs, and
        the others get a 404 for them (existence is not leaked), so they would rarely reach the domain code.
        """
        if not raw.get("security"):
            return [ANONYMOUS]
        admitted = [role for role in raw.get(ROLES_EXTENSION, ["officer"] * 2) if role in ROLES]
        return admitted * 3 + list(ROLES) + [ANONYMOUS]


def _fuzz(operation: APIOperation, roles: list[str], world: World) -> Callable[[], None]:
    """A Hypothesis test for one operation: a generated case, who sends it, and whether its ids are real."""
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=SEED is None, database=None,
              phases=[Phase.explicit, Phase.generate, Phase.shrink],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    @given(case=cases, role=st.sampled_from(roles), real_ids=st.booleans())
    def run(case: Case, role: str, real_ids: bool) -> None:
        if real_ids and case.path_parameters:
            for name in case.path_parameters:
                if name in world.ids:
                    case.path_parameters[name] = world.ids[name]
        headers = world.headers[role]
        response = case.call(headers=headers)
        world.answered[operation.label][response.status_code] += 1
        case.validate_response(response, checks=[*CHECKS, json_error_shape], headers=headers)

    return seed(int(SEED))(run) if SEED is not None else run


@pytest.fixture
def world(client, officers) -> World:
    return World(client, officers)


@pytest.fixture
def document(client) -> dict[str, Any]:
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    return r.json


def test_every_operation_answers_as_documented(app, world: World, document: dict[str, Any]) -> None:
    """All operations, each with its own bounded Hypothesis run; all failures are reported together."""
    schema = schemathesis.openapi.from_dict(_strict(document))
    schema.app = app
    schema.location = "/api/v1/openapi.json"
    schema.config.generation.update(with_security_parameters=False)  # the token is ours: `World.roles_for`
    failures: list[str] = []
    fuzzed = 0
    started = time.monotonic()
    labels = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        labels.add(operation.label)
        if operation.label in EXCLUDED:
            continue
        raw = document["paths"][operation.path][operation.method.lower()]
        try:
            _fuzz(operation, world.roles_for(raw), world)()
        except (Exception, FailureGroup) as exc:  # a FailureGroup is a BaseExceptionGroup
            failures.append(f"{operation.label}\n{exc}")
        fuzzed += 1
    if REPORT:
        for label, statuses in world.answered.items():
            print(f"{label}: {dict(sorted(statuses.items()))}")
    assert not EXCLUDED - labels, f"excluded operations no longer in the document: {EXCLUDED - labels}"
    assert fuzzed >= 80, f"only {fuzzed} operations found in the document"
    print(f"\nschema fuzz: {fuzzed} operations, {EXAMPLES} examples each, {time.monotonic() - started:.0f}s")
    assert not failures, f"{len(failures)} operations failed:\n\n" + "\n\n".join(failures)


# What the fuzzing found, pinned as plain tests: they fail fast, on both databases, without a search.


def test_an_integer_path_id_past_its_column_is_no_such_resource(client, officers) -> None:
    """SQLite cannot even bind an int past 64 bits (a 500); PostgreSQL refused it as a DataError (a 422)."""
    h = officers.headers(officers.make(region="330100", roles=("officer", "admin")))
    r = client.post(f"/api/v1/conflicts/{10**27}/resolve", json={"choice": "server", "reason": "核对"}, headers=h)
    assert (r.status_code, r.json["code"]) == (404, 404)
    assert client.post(f"/api/v1/conflicts/{2**31}/resolve", json={"choice": "server", "reason": "核对"},
                       headers=h).status_code == 404  # past the Integer column, below 64 bits
    assert client.patch(f"/api/v1/discretion-benchmarks/{2**63}", json={}, headers=h).status_code == 404


def test_tree_sizes_and_leaf_indexes_past_64_bits_are_refused(client, officers) -> None:
    h = officers.headers(officers.make())
    for query in ({"tree_size": 10**30}, {"leaf_index": 2**63, "tree_size": 1}, {"first": 1, "second": 2**63}):
        path = "/api/v1/custody/" + ("tree-head" if "tree_size" in query and len(query) == 1
                                     else "proofs/inclusion" if "leaf_index" in query else "proofs/consistency")
        r = client.get(path, query_string=query, headers=h)
        assert r.status_code == 422, (path, r.json)
        assert set(r.json["errors"]["query"]) <= set(query), r.json


def test_a_csv_with_bare_carriage_returns_imports(client, officers) -> None:
    """Old spreadsheet exports end lines with CR alone; csv reads them when it is given the text untranslated."""
    h = officers.headers(officers.make(region="330100", roles=("officer", "admin")))
    body = "name,region\r西湖区启明培训学校,330106\r".encode()
    r = client.post("/api/v1/institutions/import", data=body, headers={**h, "Content-Type": "text/csv"})
    assert r.status_code == 200, r.json
    assert (r.json["created"], r.json["errors"]) == (1, [])


def test_a_csv_the_reader_cannot_read_is_refused_whole(client, officers) -> None:
    h = officers.headers(officers.make(region="330100", roles=("officer", "admin")))
    body = ('name,region\n西湖区启明培训学校,330106\n"' + "长" * 200_000 + '",330106\n').encode()
    r = client.post("/api/v1/institutions/import", data=body, headers={**h, "Content-Type": "text/csv"})
    assert r.status_code == 422, r.json
    assert "field larger than field limit" in r.json["message"] and "csv" in r.json["errors"]
    assert client.get("/api/v1/institutions", headers=h).json["total"] == 0  # the good first row was not kept


@pytest.mark.parametrize("query", [{"date_from": "0001-01-01"}, {"date_to": "9999-12-31"}])
def test_public_results_refuse_days_at_the_ends_of_the_calendar(client, query: dict[str, str]) -> None:
    """Midnight of 0001-01-01 in Hangzhou is in year 0 in UTC, and 9999-12-31 has no next day: both raised."""
    r = client.get("/api/v1/public/inspections", query_string=query)
    assert r.status_code == 422, r.json
    assert client.get("/api/v1/public/inspections", query_string={"date_from": "1900-01-01",
                                                                  "date_to": "9000-12-31"}).status_code == 200
