"""The institution registry: credit codes, jurisdiction, search, CSV import."""

from __future__ import annotations

import pytest

from sync.credit_code import check_character, credit_code_problem

# Real, published codes (Alibaba, Tencent, Huawei, Xiaomi).
REAL_CODES = ["91330100799655058B", "9144030071526726XG", "914403001922038216", "91110108551385082Q"]


def code(body17: str) -> str:
    return body17 + check_character(body17)


@pytest.mark.parametrize("valid", REAL_CODES)
def test_real_credit_codes_validate(valid):
    assert credit_code_problem(valid) is None


@pytest.mark.parametrize(("bad", "why"), [
    ("91330100799655058C", "check character"),
    ("9133010079965505", "18 characters"),
    ("91330100799655O58B", "not allowed"),
    ("91330100799655058b", "not allowed"),
])
def test_bad_credit_codes_say_why(bad, why):
    assert why in credit_code_problem(bad)


def _inst(**over):
    body = {"name": "西湖区启航培训中心", "region": "330106", "address": "文三路 100 号",
            "credit_code": code("52330106MJ000001"[:16] + "7"), "category": "academic", "risk_level": "high",
            "licence_status": "licensed", "licence_number": "教民 133010670000001 号"}
    body.update(over)
    return body


@pytest.fixture
def admin(officers):
    return officers.make(region="330100", roles=("officer", "admin"))


def test_admin_creates_and_officer_finds_an_institution(client, officers, admin):
    r = client.post("/api/v1/institutions", json=_inst(), headers=officers.headers(admin))
    assert r.status_code == 201, r.json
    created = r.json
    officer = officers.make(region="330106")
    h = officers.headers(officer)
    assert client.get(f"/api/v1/institutions/{created['id']}", headers=h).json["name"] == "西湖区启航培训中心"
    found = client.get("/api/v1/institutions", query_string={"q": "启航"}, headers=h).json
    assert [i["id"] for i in found["items"]] == [created["id"]]
    by_code = client.get("/api/v1/institutions", query_string={"credit_code": created["credit_code"]}, headers=h)
    assert by_code.json["total"] == 1


def test_invalid_credit_code_is_422_and_nothing_is_stored(client, officers, admin):
    h = officers.headers(admin)
    r = client.post("/api/v1/institutions", json=_inst(credit_code="91330100799655058C"), headers=h)
    assert r.status_code == 422
    assert "check character" in r.json["errors"]["credit_code"][0]
    assert client.get("/api/v1/institutions", headers=h).json["total"] == 0


def test_a_credit_code_is_registered_once(client, officers, admin):
    h = officers.headers(admin)
    assert client.post("/api/v1/institutions", json=_inst(), headers=h).status_code == 201
    assert client.post("/api/v1/institutions", json=_inst(name="另一家"), headers=h).status_code == 409


def test_a_xihu_officer_cannot_see_a_binjiang_institution(client, officers, admin):
    h_admin = officers.headers(admin)
    binjiang = client.post("/api/v1/institutions", json=_inst(region="330108", credit_code=code("52330108000000001"),
                                                               name="滨江星辰教育"), headers=h_admin).json
    xihu = client.post("/api/v1/institutions", json=_inst(), headers=h_admin).json
    xihu_officer = officers.make(region="330106")
    h = officers.headers(xihu_officer)
    r = client.get(f"/api/v1/institutions/{binjiang['id']}", headers=h)
    assert r.status_code == 404
    # Same answer as an id that does not exist at all.
    assert client.get("/api/v1/institutions/ins_doesnotexist", headers=h).json["message"].startswith("no institution")
    listed = client.get("/api/v1/institutions", headers=h).json
    assert [i["id"] for i in listed["items"]] == [xihu["id"]]
    assert client.get("/api/v1/institutions", query_string={"region": "330108"}, headers=h).json["total"] == 0
    city = officers.make(region="330100")
    assert client.get("/api/v1/institutions", headers=officers.headers(city)).json["total"] == 2


def test_search_pages_consistently(client, officers, admin):
    h = officers.headers(admin)
    for i in range(7):
        r = client.post("/api/v1/institutions", json=_inst(name=f"培训机构{i:02d}", credit_code=None), headers=h)
        assert r.status_code == 201
    pages = [client.get("/api/v1/institutions", query_string={"page": p, "page_size": 3}, headers=h).json
             for p in (1, 2, 3)]
    assert [len(p["items"]) for p in pages] == [3, 3, 1]
    assert all(p["total"] == 7 for p in pages)
    names = [i["name"] for p in pages for i in p["items"]]
    assert names == sorted(names) and len(set(names)) == 7
    assert client.get("/api/v1/institutions", query_string={"page_size": 0}, headers=h).status_code == 422


def test_officers_cannot_create_institutions(client, officers):
    officer = officers.make()
    assert client.post("/api/v1/institutions", json=_inst(), headers=officers.headers(officer)).status_code == 403


def test_admin_updates_an_institution(client, officers, admin):
    h = officers.headers(admin)
    created = client.post("/api/v1/institutions", json=_inst(), headers=h).json
    r = client.patch(f"/api/v1/institutions/{created['id']}", json={"risk_level": "low", "name": "启航（西湖）"},
                     headers=h)
    assert r.status_code == 200 and r.json["risk_level"] == "low"
    r = client.patch(f"/api/v1/institutions/{created['id']}", json={"risk_level": "extreme"}, headers=h)
    assert r.status_code == 422
    assert client.get(f"/api/v1/institutions/{created['id']}", headers=h).json["risk_level"] == "low"


CSV = (
    "credit_code,name,address,region,licence_status,category,risk_level\n"
    f"{code('52330105000000011')},拱墅英才学堂,湖墅南路 1 号,330105,licensed,academic,medium\n"
    "91330100799655058C,坏代码培训,某路,330106,licensed,academic,low\n"
    ",无名小班,,330199,unknown,other,low\n"
    f"{code('52330106000000021')},西湖艺术社,,330106,licensed,arts,purple\n"
    ",钱塘体育馆,江东大道,330114,unlicensed,sports,high\n"
)


def test_csv_import_reports_bad_rows_and_imports_good_ones(client, officers, admin):
    h = {**officers.headers(admin), "Content-Type": "text/csv"}
    r = client.post("/api/v1/institutions/import", data=CSV.encode(), headers=h)
    assert r.status_code == 200, r.json
    assert r.json["created"] == 2 and r.json["updated"] == 0
    bad = {e["line"]: e for e in r.json["errors"]}
    assert set(bad) == {3, 4, 5}
    assert "credit_code" in bad[3]["errors"]
    assert "region" in bad[4]["errors"]
    assert "risk_level" in bad[5]["errors"]
    again = client.post("/api/v1/institutions/import", data=CSV.encode(), headers=h).json
    assert again["created"] == 1 and again["updated"] == 1  # the coded row updates, the uncoded one is new


def test_csv_with_unknown_columns_is_refused_whole(client, officers, admin):
    h = {**officers.headers(admin), "Content-Type": "text/csv"}
    r = client.post("/api/v1/institutions/import", data="name,region,colour\n甲,330106,red\n".encode(), headers=h)
    assert r.status_code == 422 and "colour" in r.json["message"]
    r = client.post("/api/v1/institutions/import", data=b"\xff\xfe", headers=h)
    assert r.status_code == 422
