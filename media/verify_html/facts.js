/* The facts a court reads, re-derived from the signed records the package carries (media/package_verify/facts.py):
 * which case each record belongs to, by what it says; each inspection, finding and item against the record its
 * phone signed; the institution against what each signed case.open named. A field corrected after its record was
 * applied is held against its newest correction instead (corrections.js).
 */

/* An RFC 3339 time as milliseconds since the epoch, as Python's datetime.fromisoformat reads it; null when it is
 * not one with an offset. */
function instant(value) {
  if (typeof value !== "string") { return null; }
  const m = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2})(?::(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?(Z|[+-]\d{2}(?::?\d{2}(?::?\d{2}(?:\.\d{1,6})?)?)?)?$/
    .exec(value);
  if (!m || !m[8]) { return null; }
  const [year, month, day, hour, minute, second] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i] || 0));
  const date = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  date.setUTCFullYear(year);
  if (date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day || hour > 23 || minute > 59 || second > 59) {
    return null;
  }
  const millis = m[7] ? Math.floor(Number(("0." + m[7]).slice(0, 8)) * 1000 + 1e-6) : 0;
  let offset = 0;
  if (m[8] !== "Z") {
    const digits = m[8].slice(1).replace(/:/g, "");
    const hours = Number(digits.slice(0, 2)), minutes = Number(digits.slice(2, 4) || 0);
    const seconds = Number(digits.slice(4) || 0);
    if (hours > 23 || minutes > 59 || seconds >= 60) { return null; }
    offset = (m[8][0] === "-" ? -1 : 1) * (hours * 3600 + minutes * 60 + seconds) * 1000;
  }
  return date.getTime() + millis - offset;
}

function differs(report, where, field, listed, signed) {
  report.problem(T(where.zh + "：" + field + " " + pyrepr(listed) + " 与已签名的记录（" + pyrepr(signed) + "）不同：清单所写不是手机所签",
                   where.en + ": " + field + " " + pyrepr(listed) + " differs from the signed record (" + pyrepr(signed) +
                   "): the manifest does not say what the phone signed"));
}

function sameTime(report, where, field, listed, signed) {
  if (instant(listed) === null || instant(listed) !== instant(signed)) { differs(report, where, field, listed, signed); }
}

function signedOf(signed, type) {
  return signed.get(type) || new Map();
}

function checkMembership(manifest, signed, report) {
  const caseId = req(req(manifest, "case"), "id");
  const aliases = new Set(iter(req(manifest.case, "aliases")).map((a) => req(a, "client_case_id")));
  const inspections = new Set(iter(req(manifest, "inspections")).map((i) => req(i, "id")));
  const namesCase = (ref) => isDict(ref) && (pyEq(get(ref, "id"), caseId) || aliases.has(get(ref, "client_case_id")));
  const correctable = new Set([...signedOf(signed, "*").values()]
    .filter((said) => said.type === "case.open" || said.type === "inspection.finding").map((said) => said.op));
  for (const said of signedOf(signed, "*").values()) {
    const type = said.type, body = said.body;
    let ok;
    if (type === "case.open") { ok = aliases.has(get(body, "client_case_id")); }
    else if (type === "inspection.start" || type === "case.update") { ok = namesCase(get(body, "case")); }
    else if (type === "evidence.capture") { ok = inspections.has(get(body, "inspection_id")) || namesCase(get(body, "case")); }
    else if (CONSTANTS.inspectionTypes.includes(type)) { ok = inspections.has(get(body, "inspection_id")); }
    else if (type === "record.correct") { ok = correctable.has(get(body, "op")); }
    else { ok = false; }
    if (!ok) {
      report.problem(T(said.where.zh + "：一条 " + pystr(type) + "，按其内容不属于本案",
                       said.where.en + ": a " + pystr(type) + " that, by what it says, does not belong to this case"));
    }
  }
  if (get(req(manifest, "package"), "items") === null) {
    const opened = signedOf(signed, "case.open");
    for (const alias of pysorted([...aliases].filter((a) => !opened.has(a)))) {
      report.problem(T("案件别名 " + pystr(alias) + "：其已签名的 case.open 记录不在证据包中",
                       "case alias " + pystr(alias) + ": its signed case.open record is not in the package"));
    }
  }
}

function uniqueList(values) {
  return [...new Set(values)];
}

/* A field against the newest correction of it, else against the original record. */
async function heldAgainst(report, where, field, listed, signedValue, held) {
  if (held !== undefined && held.kind === "bound") {
    if ((await factDigest(listed)) !== held.digest) {
      report.problem(T(where.zh + "：" + field + " " + pyrepr(listed) + " 不是审核人员的更正在第 " + pystr(held.index) +
                       " 号叶子上绑定的值",
                       where.en + ": " + field + " " + pyrepr(listed) + " is not the value a reviewer's correction " +
                       "bound at leaf " + pystr(held.index)));
    }
    return;
  }
  const expected = held !== undefined && held.kind === "signed" ? held.value : signedValue;
  if (!pyEq(listed, expected)) { differs(report, where, field, listed, expected); }
}

async function checkFacts(manifest, signed, report, corrected) {
  const starts = signedOf(signed, "inspection.start"), ends = signedOf(signed, "inspection.end");
  for (const inspection of iter(req(manifest, "inspections"))) {
    const where = T("检查 " + pystr(req(inspection, "id")), "inspection " + pystr(inspection.id));
    const start = starts.get(inspection.id);
    if (start === undefined) {
      report.problem(T(where.zh + "：证据包中没有签名有效的 inspection.start 记录",
                       where.en + ": no inspection.start record whose signature holds is in the package"));
      continue;
    }
    const body = start.body;
    sameTime(report, where, "started_at", req(inspection, "started_at"), start.at);
    if (!pyEq(req(inspection, "device"), start.device)) { differs(report, where, "device", inspection.device, start.device); }
    const officers = get(body, "officers");
    if (!pyEq(req(inspection, "officers"), uniqueList(truthy(officers) ? iter(officers) : []))) {
      differs(report, where, "officers", inspection.officers, officers);
    }
    if (!pyEq(req(inspection, "location"), get(body, "location"))) {
      differs(report, where, "location", inspection.location, get(body, "location"));
    }
    const end = ends.get(inspection.id);
    if (end === undefined) {
      if (req(inspection, "ended_at") !== null || req(inspection, "outcome") !== null) {
        report.problem(T(where.zh + "：列为已结束，但证据包中没有签名有效的 inspection.end 记录",
                         where.en + ": listed as ended, but no inspection.end record whose signature holds is in the " +
                         "package"));
      }
      continue;
    }
    sameTime(report, where, "ended_at", req(inspection, "ended_at"), end.at);
    for (const field of ["outcome", "notes"]) {
      if (!pyEq(req(inspection, field), get(end.body, field))) {
        differs(report, where, field, inspection[field], get(end.body, field));
      }
    }
  }
  const findings = signedOf(signed, "inspection.finding");
  for (const finding of iter(req(manifest, "findings"))) {
    const where = T("检查发现 " + pystr(req(finding, "id")), "finding " + pystr(finding.id));
    const record = findings.get(finding.id);
    if (record === undefined) {
      report.problem(T(where.zh + "：证据包中没有签名有效的 inspection.finding 记录",
                       where.en + ": no inspection.finding record whose signature holds is in the package"));
      continue;
    }
    for (const field of ["inspection_id", "category", "description", "evidence"]) {
      const expected = field === "evidence" ? get(record.body, field, []) : get(record.body, field);
      await heldAgainst(report, where, field, req(finding, field), expected, corrected.get(correctedKey(record.op, field)));
    }
    sameTime(report, where, "recorded_at", req(finding, "recorded_at"), record.at);
  }
  const captures = signedOf(signed, "evidence.capture");
  for (const item of iter(req(manifest, "evidence"))) {
    const record = captures.get(req(item, "id"));
    if (record === undefined) { continue; }  // reported with the item's file
    const where = itemWhere(item);
    sameTime(report, where, "captured_at", req(item, "captured_at"), get(record.body, "captured_at"));
    if (!pyEq(req(item, "inspection_id"), get(record.body, "inspection_id"))) {
      differs(report, where, "inspection_id", item.inspection_id, get(record.body, "inspection_id"));
    }
  }
}

/* backend/core/names.py: width, case, spaces and punctuation folded, so two spellings of a name compare alike. */
function normaliseName(name) {
  return name.normalize("NFKC").toLowerCase().replace(/ß/g, "ss").replace(/ς/g, "σ").replace(/[^\p{L}\p{N}]+/gu, "");
}

/* The institution against what each signed case.open of the case named. */
// GB 32100-2015, with the alphabet and weights of its one home (sync/credit_code.py): 18 characters of the
// alphabet, the last a check character over the first 17.
const CREDIT_ALPHABET = CONSTANTS.creditCode.alphabet;
const CREDIT_WEIGHTS = CONSTANTS.creditCode.weights;

function creditCodeValid(code) {
  if (code.length !== 18 || [...code].some((c) => !CREDIT_ALPHABET.includes(c))) { return false; }
  let total = 0;
  for (let i = 0; i < 17; i++) { total += CREDIT_ALPHABET.indexOf(code[i]) * CREDIT_WEIGHTS[i]; }
  return code[17] === CREDIT_ALPHABET[(31 - (total % 31)) % 31];
}

function checkInstitution(manifest, signed, report, corrected) {
  const institution = get(req(manifest, "case"), "institution");
  const opened = [...signedOf(signed, "case.open").entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  for (const [alias, said] of opened) {
    let ref = get(said.body, "institution");
    const held = corrected.get(correctedKey(said.op, "institution"));
    if (held !== undefined && held.kind === "needs") {
      const codes = held.codes.map(pystr).join(", ");
      report.note(T("案件别名 " + alias + "：服务器无法匹配其 case.open 所指的机构（" + codes + "）；有待更正（第 " +
                    pystr(held.index) + " 号监管叶子）",
                    "case alias " + alias + ": the server could not match the institution its case.open names (" +
                    codes + "); it awaits correction (custody leaf " + pystr(held.index) + ")"));
      continue;
    }
    if (held !== undefined && held.kind === "bound") {
      report.note(T("案件别名 " + alias + "：其机构已由审核人员更正（第 " + pystr(held.index) + " 号监管叶子）",
                    "case alias " + alias + ": its institution was corrected by a reviewer (custody leaf " +
                    pystr(held.index) + ")"));
      continue;
    }
    if (held !== undefined) { ref = held.value; }
    if (!isDict(ref)) { continue; }
    const where = T("案件别名 " + alias, "case alias " + alias);
    if (institution === null) {
      report.problem(T(where.zh + "：其已签名的 case.open 指明了机构；清单中却没有",
                       where.en + ": its signed case.open names an institution; the manifest has none"));
      continue;
    }
    if (has(ref, "id")) {
      if (!pyEq(get(institution, "id"), ref.id)) { differs(report, where, "institution.id", get(institution, "id"), ref.id); }
      continue;
    }
    if (truthy(get(ref, "credit_code"))) {
      if (typeof ref.credit_code !== "string") {
        throw new Malformed("AttributeError", "'" + pytype(ref.credit_code) + "' object has no attribute 'strip'");
      }
      const code = ref.credit_code.trim().toUpperCase();
      if (creditCodeValid(code)) {  // a failing code matches nothing: set aside, as the server does (sync/credit_code.py)
        if (!pyEq(get(institution, "credit_code"), code)) {
          differs(report, where, "institution.credit_code", get(institution, "credit_code"), code);
        }
        continue;
      }
    }
    const listedName = get(institution, "name"), signedName = get(ref, "name");
    if (normaliseName(pystr(truthy(listedName) ? listedName : "")) !==
        normaliseName(pystr(truthy(signedName) ? signedName : ""))) {
      differs(report, where, "institution.name", listedName, signedName);
    }
    if (truthy(get(ref, "region")) && !pyEq(get(institution, "region_code"), ref.region)) {
      differs(report, where, "institution.region_code", get(institution, "region_code"), ref.region);
    }
  }
}
