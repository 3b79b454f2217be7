"""The published OpenAPI document is valid and the docs page works with no internet."""

from __future__ import annotations

import json

from openapi_spec_validator import validate


def test_openapi_document_validates(client):
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    validate(r.json)
    assert "/api/v1/auth/token" in r.json["paths"]
    assert r.json["paths"]["/api/v1/me"]["get"]["security"] == [{"bearerAuth": []}]


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
