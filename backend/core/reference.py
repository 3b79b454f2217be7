"""The codes of PROTOCOL §9 and the enforcement plan's catalogue, and their idempotent seeding."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.models import (
    CATEGORIES,
    ROLES,
    Agency,
    CategoryDepartment,
    Department,
    DiscretionBenchmark,
    Region,
    ViolationCategory,
)

CITY = "330100"

REGIONS: list[tuple[str, str, str, str]] = [
    (CITY, "杭州市", "Hangzhou", "city"),
    ("330102", "上城区", "Shangcheng District", "district"),
    ("330105", "拱墅区", "Gongshu District", "district"),
    ("330106", "西湖区", "Xihu District", "district"),
    ("330108", "滨江区", "Binjiang District", "district"),
    ("330109", "萧山区", "Xiaoshan District", "district"),
    ("330110", "余杭区", "Yuhang District", "district"),
    ("330111", "富阳区", "Fuyang District", "district"),
    ("330112", "临安区", "Lin'an District", "district"),
    ("330113", "临平区", "Linping District", "district"),
    ("330114", "钱塘区", "Qiantang District", "district"),
    ("330122", "桐庐县", "Tonglu County", "district"),
    ("330127", "淳安县", "Chun'an County", "district"),
    ("330182", "建德市", "Jiande (county-level city)", "district"),
]

# code, name, English name, city agency suffix, district agency suffix
DEPARTMENTS: list[tuple[str, str, str, str, str]] = [
    ("education", "教育", "Education", "教育局", "教育局"),
    ("enforcement", "综合行政执法", "Comprehensive Administrative Enforcement",
     "综合行政执法局", "综合行政执法局"),
    ("market", "市场监督管理", "Market Regulation", "市场监督管理局", "市场监督管理局"),
    ("culture", "文化广电旅游", "Culture and Tourism", "文化广电旅游局", "文化和广电旅游体育局"),
    ("sports", "体育", "Sports", "体育局", "文化和广电旅游体育局（体育）"),
    ("science", "科学技术", "Science and Technology", "科学技术局", "科学技术局"),
    ("fire", "消防救援", "Fire Rescue", "消防救援支队", "消防救援大队"),
    ("health", "卫生健康", "Health", "卫生健康委员会", "卫生健康局"),
]

# code, name, English name, description, responsible departments (the first leads)
CATALOGUE: list[tuple[str, str, str, str, tuple[str, ...]]] = [
    ("venue", "培训场所", "Training venue", "场所面积、安全条件不符合设置标准", ("education", "fire")),
    ("staff", "从业人员", "Staff", "无教师资格、在职教师违规有偿补课、未公示从业人员信息", ("education",)),
    ("content", "培训内容", "Training content", "超标超前培训、违背教育方针", ("education",)),
    ("materials", "培训材料", "Training materials", "培训材料未备案或内容违规", ("education", "culture")),
    ("methods", "培训方式", "Training methods", "线上培训违规、一对一违规", ("education",)),
    ("hours", "培训时间", "Training hours", "在国家法定节假日、休息日及寒暑假违规培训，晚间超时", ("education",)),
    ("pricing", "收费标准", "Price standards", "超出政府指导价收费、价格欺诈", ("market", "education")),
    ("fees", "资金管理", "Fee management", "超期收费、预收费未纳入监管", ("education", "market")),
    ("contracts", "培训合同", "Training contracts", "未使用示范合同文本、霸王条款", ("market", "education")),
    ("advertising", "广告宣传", "Advertising", "违规发布校外培训广告", ("market",)),
    ("competitions", "竞赛活动", "Competitions", "违规举办面向中小学生的竞赛活动", ("education", "science")),
    ("fire_safety", "消防安全", "Fire safety", "消防设施缺失、疏散通道堵塞", ("fire",)),
    ("food_safety", "食品安全", "Food safety", "无证提供餐饮、食品安全隐患", ("market",)),
    ("epidemic", "疫情防控", "Epidemic prevention", "未落实传染病防控措施", ("health", "education")),
    ("unlicensed", "无证办学", "Unlicensed operation", "未经审批登记擅自开展培训",
     ("education", "enforcement", "market")),
    ("disguised", "隐形变异培训", "Disguised training",
     "以家政、众筹、游学、托管等名义开展隐形变异学科类培训",
     ("education", "enforcement", "culture", "sports", "science")),
]


_PRIVATE_EDUCATION = ("《中华人民共和国民办教育促进法》第六十四条：擅自举办民办学校的，责令停止办学、退还所收费用，"
                      "并对举办者处违法所得一倍以上五倍以下的罚款；《校外培训行政处罚暂行办法》（教育部令第53号）")
_LENIENCY = "《中华人民共和国行政处罚法》第三十二条、第三十三条（从轻、减轻，初次违法且及时改正的可以不予处罚）"
_TRAINING = "《校外培训行政处罚暂行办法》（教育部令第53号）"
_FIRE = ("《中华人民共和国消防法》第六十条第一款：消防设施、器材或者消防安全标志的配置、设置不符合标准，"
         "占用、堵塞、封闭疏散通道、安全出口的，责令改正，处五千元以上五万元以下罚款")
_FOOD = ("《中华人民共和国食品安全法》第一百二十二条第一款：未取得食品经营许可从事食品经营活动，"
         "货值金额不足一万元的，并处五万元以上十万元以下罚款")
_PRICE = ("《中华人民共和国价格法》第三十九条；《价格违法行为行政处罚规定》第九条：不执行政府指导价，"
          "没有违法所得的，处五万元以上五十万元以下的罚款")

_STOP_LENIENT = "责令停止培训、退还所收费用；初次违法、涉案金额较小且及时改正的，从轻或者减轻处罚"
_STOP_FINE = "责令停止培训、退还所收费用，并处违法所得一倍以上五倍以下罚款"
_WARN_ONLY = "责令改正，予以警告或者通报批评；初次违法且及时改正的，不予罚款"
_WARN_FINE = "责令改正，退还所收费用，予以警告或者通报批评；情节严重的，处五万元以下罚款"
_UNLICENSED_KINDS = ("unlicensed", "disguised")
_TRAINING_KINDS = ("venue", "staff", "content", "materials", "methods", "hours", "fees", "contracts", "competitions")

# A starting set of discretion benchmarks (裁量基准), for the legal department to confirm or replace through
# the API; amounts in yuan, "amount" being the sum involved (违法所得 / 货值). Seeded per category only while
# that category has none, so admins' edits are never overwritten.
# category, first offence, rectified in time, amount min, amount max, fine min, fine max, measures, basis
DISCRETION_BENCHMARKS: list[tuple[str, bool | None, bool | None, int | None, int | None, int, int, str, str]] = [
    *[(code, True, True, 0, 10_000, 0, 10_000, _STOP_LENIENT, f"{_PRIVATE_EDUCATION}；{_LENIENCY}")
      for code in _UNLICENSED_KINDS],
    *[(code, None, None, lo, hi, fmin, fmax, _STOP_FINE, _PRIVATE_EDUCATION)
      for code in _UNLICENSED_KINDS
      for lo, hi, fmin, fmax in ((0, 10_000, 0, 50_000), (10_001, 100_000, 10_001, 500_000))],
    *[row for code in _TRAINING_KINDS
      for row in ((code, True, True, None, None, 0, 0, _WARN_ONLY, f"{_TRAINING}；{_LENIENCY}"),
                  (code, None, None, None, None, 0, 50_000, _WARN_FINE, _TRAINING))],
    ("fire_safety", True, True, None, None, 5_000, 10_000, "责令改正；初次违法且及时改正的，在下限附近处罚", _FIRE),
    ("fire_safety", None, None, None, None, 5_000, 50_000, "责令改正", _FIRE),
    ("food_safety", None, None, 0, 9_999, 50_000, 100_000, "没收违法所得和违法经营的食品", _FOOD),
    ("pricing", None, None, 0, 0, 50_000, 500_000, "责令改正（无违法所得）", _PRICE),
]


def seed_benchmarks(session: Session) -> int:
    """Insert the starting benchmarks of every category that has none yet; returns how many rows were added."""
    have = set(session.scalars(select(DiscretionBenchmark.category_code).distinct()))
    added = 0
    for code, first, rectified, amin, amax, fmin, fmax, measures, basis in DISCRETION_BENCHMARKS:
        if code in have:
            continue
        session.add(DiscretionBenchmark(category_code=code, first_offence=first, rectified_in_time=rectified,
                                        amount_min_yuan=amin, amount_max_yuan=amax, fine_min_yuan=fmin,
                                        fine_max_yuan=fmax, measures=measures, basis=basis))
        added += 1
    session.flush()
    return added


def agency_id(department: str, region: str) -> str:
    return f"{department}-{region}"


def _agency_names(department: tuple[str, str, str, str, str], region: tuple[str, str, str, str]):
    code, _zh, en, city_suffix, district_suffix = department
    suffix = city_suffix if region[3] == "city" else district_suffix
    return f"{region[1]}{suffix}", f"{region[2]} {en} Bureau"


def seed(session: Session) -> dict[str, int]:
    """Insert what is missing and bring names up to date; safe to run any number of times."""
    counts = {"regions": 0, "departments": 0, "agencies": 0, "categories": 0}
    for i, (code, zh, en, level) in enumerate(REGIONS):
        row = session.get(Region, code) or Region(code=code)
        counts["regions"] += row.name_zh is None
        row.name_zh, row.name_en, row.level, row.sort = zh, en, level, i
        row.parent_code = None if level == "city" else CITY
        session.add(row)
        session.flush()
    for i, (code, zh, en, _c, _d) in enumerate(DEPARTMENTS):
        row = session.get(Department, code) or Department(code=code)
        counts["departments"] += row.name_zh is None
        row.name_zh, row.name_en, row.lead, row.sort = zh, en, code == "education", i
        session.add(row)
    session.flush()
    for dept in DEPARTMENTS:
        for region in REGIONS:
            aid = agency_id(dept[0], region[0])
            row = session.get(Agency, aid) or Agency(id=aid)
            counts["agencies"] += row.name_zh is None
            row.department_code, row.region_code = dept[0], region[0]
            row.name_zh, row.name_en = _agency_names(dept, region)
            session.add(row)
    for i, (code, zh, en, desc, depts) in enumerate(CATALOGUE):
        row = session.get(ViolationCategory, code) or ViolationCategory(code=code)
        counts["categories"] += row.name_zh is None
        row.name_zh, row.name_en, row.description_zh, row.sort = zh, en, desc, i
        session.add(row)
        session.flush()
        wanted = {d: j for j, d in enumerate(depts)}
        for link in list(row.departments):
            if link.department_code not in wanted:
                session.delete(link)
        have = {link.department_code: link for link in row.departments}
        for dept_code, j in wanted.items():
            link = have.get(dept_code) or CategoryDepartment(category_code=code, department_code=dept_code)
            link.primary, link.sort = j == 0, j
            session.add(link)
    session.flush()
    return counts


def reference_document(session: Session) -> dict[str, Any]:
    regions = session.scalars(select(Region).order_by(Region.sort)).all()
    departments = session.scalars(select(Department).order_by(Department.sort)).all()
    agencies = session.scalars(select(Agency).order_by(Agency.region_code, Agency.department_code)).all()
    categories = session.scalars(select(ViolationCategory).order_by(ViolationCategory.sort)).all()
    return {
        "regions": [
            {"code": r.code, "name_zh": r.name_zh, "name_en": r.name_en, "level": r.level,
             "parent": r.parent_code}
            for r in regions
        ],
        "departments": [
            {"code": d.code, "name_zh": d.name_zh, "name_en": d.name_en, "lead": d.lead,
             "levels": ["city", "district"]}
            for d in departments
        ],
        "agencies": [
            {"id": a.id, "department": a.department_code, "region": a.region_code,
             "name_zh": a.name_zh, "name_en": a.name_en}
            for a in agencies
        ],
        "violation_categories": [
            {"code": c.code, "name_zh": c.name_zh, "name_en": c.name_en, "description_zh": c.description_zh,
             "departments": [link.department_code for link in c.departments]}
            for c in categories
        ],
        "institution_categories": list(CATEGORIES),
        "roles": list(ROLES),
    }


def is_city_level(region_code: str) -> bool:
    return region_code == CITY
