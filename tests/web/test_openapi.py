"""The published OpenAPI document is valid and complete enough to build a client from (every operation named and
summed up, the upload probe, a push's results), and the docs page works with no internet."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

from openapi_spec_validator import validate

from backend.core.models import Officer
from backend.web.api.sync import PushResultEntrySchema
from sync.push import push
from tests.phones import TestPhone, uid


def test_openapi_document_validates(client):
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    validate(r.json)
    assert "/api/v1/auth/token" in r.json["paths"]
    assert r.json["paths"]["/api/v1/me"]["get"]["security"] == [{"bearerAuth": []}]


def test_given_two_first_readers_at_once_then_both_get_the_whole_document(app):
    """The document is written when first read (backend/web/api/blueprint.py `Api`): a second reader meanwhile
    waits for all of it, not half."""
    barrier = threading.Barrier(2)
    bodies: list[bytes] = []

    def read() -> None:
        client = app.test_client()
        barrier.wait()
        bodies.append(client.get("/api/v1/openapi.json").data)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    whole = app.test_client().get("/api/v1/openapi.json").data
    assert len(json.loads(whole)["paths"]) > 50
    assert bodies == [whole, whole]


def test_docs_page_serves_its_own_assets(client):
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    html = page.data.decode()
    assert "/api/v1/docs/assets/swagger-ui-bundle.js" in html
    assert "//cdn" not in html and "unpkg" not in html
    asset = client.get("/api/v1/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.data) > 100_000


def test_every_operation_documents_the_errors_it_shares(client):
    """`default` is not a contract: 401/403 on secured operations, 404 with a path id, the rest everywhere."""
    doc = client.get("/api/v1/openapi.json").json
    error = {"$ref": "#/components/schemas/Error"}
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation["responses"]
            expected = {"422", "431", "503"}
            if operation.get("security"):
                expected |= {"401", "403"}
            if "{" in path:
                expected |= {"404"}
            if method != "get":
                expected |= {"409"}
            if "requestBody" in operation:
                expected |= {"413"}
            assert expected <= set(responses), (method, path, sorted(expected - set(responses)))
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    assert response["content"]["application/json"]["schema"] == error, (method, path, status)
            assert "Retry-After" in responses["503"]["headers"], (method, path)


def test_operations_name_the_roles_they_need(client):
    doc = client.get("/api/v1/openapi.json").json
    assert doc["paths"]["/api/v1/officers"]["post"]["x-roles"] == ["admin"]
    assert "admin" in doc["paths"]["/api/v1/officers"]["post"]["responses"]["403"]["description"]
    assert "x-roles" not in doc["paths"]["/api/v1/me"]["get"]


def test_the_document_has_no_duplicate_keys(client):
    """Decorators document statuses as ints or strings; mixed, the JSON would carry one status twice."""

    def no_duplicates(pairs: list[tuple[str, object]]) -> dict:
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
        return dict(pairs)

    json.loads(client.get("/api/v1/openapi.json").data, object_pairs_hook=no_duplicates)


def operations(doc: dict) -> list[tuple[str, str, dict]]:
    methods = ("get", "head", "post", "put", "patch", "delete")
    return [(method, path, op) for path, item in doc["paths"].items() for method, op in item.items()
            if method in methods]


def test_given_the_document_when_read_then_every_operation_has_a_summary_and_a_unique_operation_id(client):
    doc = client.get("/api/v1/openapi.json").json

    ops = operations(doc)
    ids = [op.get("operationId") for _method, _path, op in ops]

    assert len(ops) > 80
    assert [(m, p) for m, p, op in ops if not op.get("summary", "").strip()] == []
    assert [(m, p) for m, p, op in ops if not op.get("operationId")] == []
    assert sorted(i for i in ids if ids.count(i) > 1) == []


def test_given_pushes_of_every_outcome_when_answered_then_the_result_schema_declares_every_field(app, client,
                                                                                                 officers):
    """The results are written through `PushResultEntrySchema`, which writes only what it declares: a field the
    push domain adds and the schema lacks would silently vanish from the answer. So the domain's own answer, for
    every status and every optional field, must fit the schema exactly."""
    zhang, li = officers.make(), officers.make(department="market")
    phone = TestPhone(client, zhang, officers.headers(zhang))
    cid, opened = phone.open_case({"name": "西湖区明日之星培训中心", "region": "330106"})
    phone.push([opened])
    iid, started = phone.start(cid, [zhang.id, li.id])
    finding = phone.record("inspection.finding", {"inspection_id": iid, "finding_id": uid(), "category": "unlicensed",
                                                  "description": "无证", "evidence": [uid()]})
    phone.push([finding])  # held behind seq 2: caught up below
    bad = phone.record("inspection.end", {"inspection_id": uid(), "outcome": "no_violation"})  # unknown: invalid
    later = phone.record("case.open", {"client_case_id": uid(), "institution": {"name": "某中心", "region": "330106"}})
    phone.seq += 1  # a gap before `held`
    held = phone.record("case.open", {"client_case_id": uid(), "institution": {"name": "某中心", "region": "330106"}})

    state = app.extensions["fieldcase"]
    with state.db.session() as s:
        answer = push(s, s.get(Officer, zhang.id), [opened, started, bad, later, held, "not a jws"],
                      applier=state.applier, now=datetime.now(UTC))
        s.rollback()

    results = answer["results"]
    assert {r["status"] for r in results} == {"duplicate", "applied", "invalid", "deferred", "rejected"}
    assert any(r.get("caught_up") for r in results) and any(r.get("flags") for r in results)
    assert any(r.get("first_status") for r in results) and any(r.get("refs") for r in results)
    assert {key for r in results for key in r} <= set(PushResultEntrySchema().fields)
    assert PushResultEntrySchema(many=True).dump(results) == results


def test_given_the_document_when_read_then_the_upload_probe_and_the_file_digests_are_described(client):
    doc = client.get("/api/v1/openapi.json").json
    content = doc["paths"]["/api/v1/evidence/{evidence_id}/content"]

    probe = content["head"]
    served = content["get"]["responses"]["200"]["headers"]

    assert "Upload-Offset" in probe["responses"]["200"]["headers"]
    assert "content" not in probe["responses"]["200"] and "content" not in probe["responses"]["404"]  # no body
    assert probe["operationId"] != content["get"]["operationId"]
    assert {"ETag", "Digest"} <= set(served)


def test_given_the_document_when_read_then_a_push_result_is_a_real_schema(client):
    doc = client.get("/api/v1/openapi.json").json
    schemas = doc["components"]["schemas"]

    results = schemas["PushResult"]["properties"]["results"]["items"]
    entry = schemas[results["$ref"].rsplit("/", 1)[1]]

    assert set(entry["properties"]) == {"op", "device", "seq", "status", "code", "detail", "refs", "flags",
                                        "first_status", "caught_up"}
    assert entry["properties"]["status"]["enum"] == ["applied", "duplicate", "conflict", "invalid", "deferred",
                                                     "rejected"]
    assert "unknown_evidence" in entry["properties"]["refs"]["properties"]
