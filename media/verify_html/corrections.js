/* Corrections a package proves (media/package_verify/corrections.py): which signed values a row may differ from,
 * and what it is held against instead. A case's proven `needs_correction` leaf binds that a record was applied
 * although what it named could not be matched; each `corrected` leaf binds a correction (a digest of each value):
 * a phone's names its signed record.correct, which must be in the package and give exactly those values; a
 * reviewer's binds only the digests. In log order, the newest correction of a field is what the row must say.
 */

/* The key of a corrected field: (op of the corrected record, field), as Python's tuple. */
function correctedKey(op, field) {
  return JSON.stringify([op === undefined ? null : op, field === undefined ? null : field]);
}

async function checkCorrections(manifest, signed, report) {
  const theCase = req(manifest, "case");
  const events = get(theCase, "custody_events");
  const out = new Map();  // correctedKey -> {kind: "needs" | "signed" | "bound", index, value, digest, codes}
  if (!Array.isArray(events)) { return out; }  // named with the case's facts
  const fixes = new Map();
  for (const said of signedOf(signed, "*").values()) {
    if (said.type === "record.correct") { fixes.set(said.op === undefined ? null : said.op, said); }
  }
  const present = new Set([...signedOf(signed, "*").values()].map((said) => (said.op === undefined ? null : said.op)));
  const applied = new Set();
  for (const event of events) {
    const leaf = jsonLoads(req(event, "leaf"));
    if (!isDict(leaf) || !CONSTANTS.correctionActions.includes(get(leaf, "action")) ||
        !pyEq(get(leaf, "case"), req(theCase, "id"))) {
      continue;
    }
    const index = req(event, "leaf_index"), corrects = get(leaf, "corrects");
    let fields = get(leaf, "fields");
    const where = T("第 " + pystr(index) + " 号叶子上的案件监管事件", "case custody event at leaf " + pystr(index));
    if (leaf.action === "needs_correction") {
      const codes = get(leaf, "codes");
      for (const name of Array.isArray(fields) ? fields : []) {
        out.set(correctedKey(corrects, name), { kind: "needs", index: index, codes: Array.isArray(codes) ? codes : [] });
      }
      continue;
    }
    fields = isDict(fields) ? fields : {};
    const op = get(leaf, "op");
    if (op === null) {
      for (const [name, digest] of Object.entries(fields)) {
        out.set(correctedKey(corrects, name), { kind: "bound", index: index, digest: digest });
      }
      continue;
    }
    if (!present.has(corrects)) { continue; }  // the corrected record is not in this package (one of chosen items)
    applied.add(op);
    const said = fixes.get(op);
    if (said === undefined) {
      report.problem(T(where.zh + "：它应用的 record.correct " + pystr(op) + " 不在证据包中",
                       where.en + ": it applies the record.correct " + pystr(op) + ", which is not in the package"));
      continue;
    }
    const body = said.body;
    if (!pyEq(get(body, "op"), corrects)) {
      report.problem(T(where.zh + "：它把 " + said.where.zh + " 应用于记录 " + pystr(corrects) + "，但该 record.correct 更正的是 " +
                       pystr(get(body, "op")),
                       where.en + ": it applies " + said.where.en + " to record " + pystr(corrects) + ", but that " +
                       "record.correct corrects " + pystr(get(body, "op"))));
      continue;
    }
    const values = isDict(get(body, "fields")) ? body.fields : {};
    for (const [name, digest] of Object.entries(fields)) {
      if ((await factDigest(get(values, name))) !== digest) {
        report.problem(T(where.zh + "：其 " + name + " 不是 " + said.where.zh + " 所签的值",
                         where.en + ": its " + name + " is not the value " + said.where.en + " signed"));
        continue;
      }
      out.set(correctedKey(corrects, name), { kind: "signed", index: index, value: get(values, name) });
    }
  }
  for (const [op, said] of fixes) {
    if (!applied.has(op)) {
      report.problem(T(said.where.zh + "：一条 record.correct，其 'corrected' 监管事件不在证据包中",
                       said.where.en + ": a record.correct whose 'corrected' custody event is not in the package"));
    }
  }
  return out;
}
