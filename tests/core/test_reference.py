"""PROTOCOL §9: the codes the phones share with the server."""

from __future__ import annotations

PROTOCOL_REGIONS = {"330100", "330102", "330105", "330106", "330108", "330109", "330110", "330111", "330112",
                    "330113", "330114", "330122", "330127", "330182"}
PROTOCOL_DEPARTMENTS = {"education", "enforcement", "market", "culture", "sports", "science", "fire", "health"}
PROTOCOL_CATALOGUE = {"venue", "staff", "content", "materials", "methods", "hours", "pricing", "fees", "contracts",
                      "advertising", "competitions", "fire_safety", "food_safety", "epidemic", "unlicensed",
                      "disguised"}


def test_reference_serves_the_protocol_codes(client, officers):
    ref = client.get("/api/v1/reference", headers=officers.headers(officers.make())).json
    regions = {r["code"]: r for r in ref["regions"]}
    assert set(regions) == PROTOCOL_REGIONS
    assert regions["330106"]["name_zh"] == "西湖区" and regions["330106"]["level"] == "district"
    assert regions["330106"]["parent"] == "330100" and regions["330100"]["level"] == "city"
    assert {d["code"] for d in ref["departments"]} == PROTOCOL_DEPARTMENTS
    assert [d["code"] for d in ref["departments"] if d["lead"]] == ["education"]
    cats = {c["code"]: c for c in ref["violation_categories"]}
    assert set(cats) == PROTOCOL_CATALOGUE
    assert cats["unlicensed"]["name_zh"] == "无证办学" and cats["fire_safety"]["departments"] == ["fire"]
    assert all(c["departments"] and c["name_en"] for c in cats.values())
    # Every department exists at the city and in every district.
    agencies = {(a["department"], a["region"]): a for a in ref["agencies"]}
    assert len(agencies) == len(PROTOCOL_DEPARTMENTS) * len(PROTOCOL_REGIONS)
    assert agencies[("education", "330106")]["name_zh"] == "西湖区教育局"
    assert agencies[("market", "330100")]["name_zh"] == "杭州市市场监督管理局"
