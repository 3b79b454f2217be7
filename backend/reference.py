"""The codes of PROTOCOL §9 and the enforcement plan's catalogue, and their idempotent seeding."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import CATEGORIES, ROLES, Agency, CategoryDepartment, Department, Region, ViolationCategory

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
