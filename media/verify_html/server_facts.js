/* The facts only the server knows, held against the custody events that bound them when they happened
 * (media/package_verify/server_facts.py): the case's status, summary and whose it is against its newest proven
 * case leaf (each fact bound as the SHA-256 of its canonical JSON); each item's holder, export and deletion
 * against its proven custody events.
 */

/* media/custody/encoding.py `fact_digest`: hex SHA-256 of the value's canonical JSON. */
async function factDigest(value) {
  return hex(await sha256(utf8(canonicalJSON(value))));
}

function caseValue(theCase, name) {
  if (name === "institution_id") {
    const institution = get(theCase, "institution");
    return [institution !== null, institution === null ? null : get(institution, "id")];
  }
  return [has(theCase, name), get(theCase, name)];
}

async function checkCaseFacts(manifest, tree, report) {
  const theCase = req(manifest, "case");
  const events = get(theCase, "custody_events");
  if (!Array.isArray(events)) {
    report.problem(T("案件：证据包没有带上本案的监管事件，因此其状态和摘要没有被监管日志绑定",
                     "case: the package carries no custody events for the case, so its status and summary are not " +
                     "bound by the custody log"));
    return;
  }
  const bound = new Map();  // fact -> [leaf index, digest] of the newest proven leaf naming it
  let last = -1;
  for (const event of events) {
    report.events += 1;
    const index = req(event, "leaf_index"), leaf = jsonLoads(req(event, "leaf"));
    const where = T("第 " + pystr(index) + " 号叶子上的案件监管事件", "case custody event at leaf " + pystr(index));
    const action = get(leaf, "action"), ofCase = get(leaf, "case");
    if (!(CONSTANTS.caseActions.includes(action) || CONSTANTS.correctionActions.includes(action)) ||
        !pyEq(ofCase, req(theCase, "id"))) {
      report.problem(T(where.zh + "：它是案件 " + pyrepr(ofCase) + " 的 " + pyrepr(action) + " 事件，不是本案的事实",
                       where.en + ": it is a " + pyrepr(action) + " event of case " + pyrepr(ofCase) + ", not a fact of " +
                       "this case"));
      continue;
    }
    if (index <= last) {
      report.problem(T(where.zh + "：案件事件没有按日志顺序排列", where.en + ": case events are not in log order"));
    }
    last = Math.max(last, index);
    if (tree === null || !(await inclusionHolds(event, where, leaf, tree, report))) { continue; }
    if (CONSTANTS.correctionActions.includes(action)) { continue; }  // what a correction changed (corrections.js)
    const facts = get(leaf, "facts");
    if (!isDict(facts)) {
      report.problem(T(where.zh + "：它没有绑定任何事实", where.en + ": it binds no facts"));
      continue;
    }
    for (const [name, digest] of Object.entries(facts)) { bound.set(name, [index, digest]); }
  }
  for (const name of pysorted(bound.keys())) {
    const [index, digest] = bound.get(name);
    const [present, value] = caseValue(theCase, name);
    if (!present) { continue; }  // a fact this package does not present
    if ((await factDigest(value)) !== digest) {
      const field = name === "institution_id" ? "institution.id" : name;
      report.problem(T("案件：" + field + " " + pyrepr(value) + " 不是监管日志在第 " + index + " 号叶子上绑定的值：" +
                       "服务器的记录在留痕的操作之外被改动过",
                       "case: " + field + " " + pyrepr(value) + " is not the value the custody log bound at leaf " +
                       index + ": the server's record was changed outside the steps that log it"));
    }
  }
  for (const name of ["status", "summary"]) {
    if (!bound.has(name)) {
      report.problem(T("案件：其 " + name + " 没有被证据包中任何经过证明的监管事件绑定",
                       "case: its " + name + " is bound by no proven custody event in the package"));
    }
  }
}

/* An item's holder, its export and its deletion against its proven custody events (in log order). */
function checkItemFacts(manifest, item, where, proven, report) {
  const pkg = req(manifest, "package");
  let holder = null;
  const exports = [];
  for (const leaf of proven) {
    const action = get(leaf, "action");
    if (action === "verified" && holder === null) { holder = get(leaf, "actor"); }
    else if (action === "transferred") { holder = get(leaf, "to"); }
    else if (action === "exported" && pyEq(get(leaf, "package"), req(pkg, "id"))) { exports.push(leaf); }
  }
  const listed = get(item, "custody_holder");
  if (!pyEq(listed, holder)) {
    report.problem(T(where.zh + "：custody_holder " + pyrepr(listed) + " 不是其经过证明的监管事件所指的保管人（" + pyrepr(holder) + "）",
                     where.en + ": custody_holder " + pyrepr(listed) + " is not the holder its proven custody events " +
                     "name (" + pyrepr(holder) + ")"));
  }
  if (exports.length === 0) {
    report.problem(T(where.zh + "：没有经过证明的本证据包 'exported' 监管事件：导出的用途和导出人没有被绑定",
                     where.en + ": no proven 'exported' custody event of this package: the export's purpose and " +
                     "author are not bound"));
  }
  for (const leaf of exports) {
    if (!pyEq(get(leaf, "purpose"), get(pkg, "purpose"))) {
      report.problem(T(where.zh + "：证据包的用途 " + pyrepr(get(pkg, "purpose")) + " 与其 'exported' 监管事件记录的（" +
                       pyrepr(get(leaf, "purpose")) + "）不同",
                       where.en + ": the package's purpose " + pyrepr(get(pkg, "purpose")) + " differs from the one " +
                       "its 'exported' custody event records (" + pyrepr(get(leaf, "purpose")) + ")"));
    }
    if (!pyEq(get(leaf, "actor"), get(pkg, "created_by"))) {
      report.problem(T(where.zh + "：证据包写的导出人是 " + pyrepr(get(pkg, "created_by")) + "，其 'exported' 监管事件写的是 " +
                       pyrepr(get(leaf, "actor")),
                       where.en + ": the package names " + pyrepr(get(pkg, "created_by")) + " as its author, its " +
                       "'exported' custody event " + pyrepr(get(leaf, "actor"))));
    }
  }
  const deletions = proven.filter((leaf) => get(leaf, "action") === "deleted");
  if (deletions.length && get(item, "status") === "deleted") {
    const leaf = deletions[deletions.length - 1];
    if (!pyEq(get(item, "deleted_by"), get(leaf, "actor")) || !pyEq(get(item, "deleted_at"), get(leaf, "at"))) {
      const listedPair = pystr(get(item, "deleted_at")) + ", " + pystr(get(item, "deleted_by"));
      const eventPair = pystr(get(leaf, "at")) + ", " + pystr(get(leaf, "actor"));
      report.problem(T(where.zh + "：deleted_at/deleted_by（" + listedPair + "）与其 'deleted' 监管事件（" + eventPair + "）不同",
                       where.en + ": deleted_at/deleted_by (" + listedPair + ") differ from its 'deleted' custody event (" +
                       eventPair + ")"));
    }
  }
}
