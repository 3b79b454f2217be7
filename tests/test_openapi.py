"""The published OpenAPI document is valid and the docs page works with no internet."""

from __future__ import annotations

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
