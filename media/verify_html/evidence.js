/* The evidence of a package (media/package_verify/evidence.py): each item against its signed declaration, each
 * file's bytes, and each custody event's inclusion proof against the signed tree head.
 *
 * Digests: a declaration names `sha256`, `sm3` or both. Each one it names must be the item's; a file is hashed with
 * SHA-256, and with SM3 too (in the same read) when its item carries an `sm3`. An item without `sm3` is checked
 * exactly as before SM3 existed.
 */

/* Whether a signed evidence.capture names this digest. A body naming neither is held to `sha256`, as every
 * declaration was before `sm3`. */
function declares(body, name) {
  return has(body, name) || (name === "sha256" && !has(body, "sm3"));
}

/* Whether a custody leaf's digests are the item's: each one the leaf names and the item lists (`sha256` always;
 * `sm3` where the item has one), or `sha256` when there is no such one. */
function sameDigests(leaf, item) {
  let named = CONSTANTS.evidenceDigests.filter((name) => has(leaf, name) && (name === "sha256" || has(item, name)));
  if (named.length === 0) { named = ["sha256"]; }
  return named.every((name) => pyEq(get(leaf, name), name === "sha256" ? req(item, "sha256") : get(item, name)));
}

/* json.loads of a leaf the manifest carries as text. */
function jsonLoads(text) {
  if (typeof text !== "string") {
    throw new Malformed("TypeError", "the JSON object must be str, bytes or bytearray, not " + pytype(text));
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Malformed("JSONDecodeError", error.message);
  }
}

function itemWhere(item) {
  const name = pystr(get(item, "item")) + " (" + pystr(req(item, "id")) + ")";
  return T("证据 " + name, "evidence " + name);
}

async function checkEvidence(members, manifest, signed, tree, report) {
  const packageId = req(req(manifest, "package"), "id");
  const listed = new Set();
  const evidence = iter(req(manifest, "evidence"));
  report.items = evidence.length;
  const captures = signed.get("evidence.capture") || new Map();
  for (const item of evidence) {
    const eid = req(item, "id");
    const where = itemWhere(item);
    const declared = captures.get(eid);
    if (declared === undefined) {
      report.problem(T(where.zh + "：其已签名的 evidence.capture 记录不在证据包中",
                       where.en + ": its signed evidence.capture record is not in the package"));
    } else {
      for (const name of ["sha256", "sm3", "size", "kind", "media_type"]) {
        if (CONSTANTS.evidenceDigests.includes(name) && !declares(declared.body, name)) {
          continue;  // a digest the phone did not declare: the server's own, held against the file below
        }
        const listed = name === "sm3" ? get(item, name) : req(item, name);  // an item may lack sm3, never the rest
        const signedValue = get(declared.body, name);
        if (!pyEq(signedValue, listed)) {
          report.problem(T(where.zh + "：" + name + " " + pyrepr(listed) + " 与已签名的声明（" + pyrepr(signedValue) + "）不同",
                           where.en + ": " + name + " " + pyrepr(listed) + " differs from the signed declaration (" +
                           pyrepr(signedValue) + ")"));
        }
      }
      if (!pyEq(declared.device, req(item, "device"))) {
        report.problem(T(where.zh + "：由设备 " + declared.device + " 声明，而不是 " + pystr(item.device),
                         where.en + ": declared by device " + declared.device + ", not " + pystr(item.device)));
      }
    }
    const held = await checkEvents(item, where, tree, packageId, report);
    checkItemFacts(manifest, item, where, held, report);
    const proven = new Map();
    for (const leaf of held) {
      if (["verified", "deleted"].includes(get(leaf, "action"))) { proven.set(leaf.action, leaf); }
    }
    const deletion = proven.get("deleted");
    if (truthy(get(item, "file"))) {
      listed.add(item.file);
      await checkFile(members, item, where, report);
      if (deletion !== undefined) {
        report.problem(T(where.zh + "：监管日志记录了其文件已被删除，但证据包里却有这个文件",
                         where.en + ": the custody log records the deletion of its file, yet the package holds one"));
      }
    } else if (deletion !== undefined) {
      checkDeleted(item, where, deletion, report);
    } else if (req(item, "status") === "deleted") {
      report.problem(T(where.zh + "：列为已删除，但没有经过证明的 'deleted' 监管事件这样说：其文件从证据包中缺失",
                       where.en + ": listed as deleted, but no proven 'deleted' custody event says so: its file is " +
                       "missing from the package"));
    } else if (item.status === "verified") {
      report.problem(T(where.zh + "：已核验，但其文件不在证据包中", where.en + ": verified, but its file is not in the package"));
    } else if (proven.has("verified")) {
      report.problem(T(where.zh + "：监管日志显示它已核验，但其文件不在证据包中（列为 " + pyrepr(item.status) + "）",
                       where.en + ": the custody log shows it verified, but its file is not in the package (listed as " +
                       pyrepr(item.status) + ")"));
    }
  }
  for (const name of members.names()) {
    if (name.startsWith("files/") && !listed.has(name)) {
      report.problem(T("文件 " + name + "：在证据包中，但清单没有列出", "file " + name + ": in the package but not listed in the manifest"));
    }
  }
}

async function checkFile(members, item, where, report) {
  const name = item.file;
  let digest, size, sm3Digest = null;
  try {
    if (get(item, "sm3") !== null) {
      [digest, size, sm3Digest] = await members.digests(name);  // both from one read
    } else {
      [digest, size] = await members.digest(name);
    }
  } catch (error) {
    if (error instanceof NoMember) {
      report.problem(T(where.zh + "：其文件 " + pystr(name) + " 不在证据包中", where.en + ": its file " + pystr(name) +
                       " is missing from the package"));
      return;
    }
    if (error instanceof Damaged) {
      report.problem(T(where.zh + "：文件 " + name + " 已损坏（" + error.message + "）；其字节被改动过",
                       where.en + ": file " + name + " is damaged (" + error.message + "); its bytes were altered"));
      return;
    }
    throw error;
  }
  report.files += 1;
  if (digest !== req(item, "sha256")) {
    report.problem(T(where.zh + "：文件 " + name + " 的 SHA-256 是 " + digest + "，不是声明的 " + pystr(item.sha256) + "：文件被改动过",
                     where.en + ": file " + name + " has SHA-256 " + digest + ", not the declared " + pystr(item.sha256) +
                     ": the file was altered"));
  }
  if (sm3Digest !== null && sm3Digest !== item.sm3) {
    report.problem(T(where.zh + "：文件 " + name + " 的 SM3 是 " + sm3Digest + "，不是声明的 " + pystr(item.sm3) + "：文件被改动过",
                     where.en + ": file " + name + " has SM3 " + sm3Digest + ", not the declared " + pystr(item.sm3) +
                     ": the file was altered"));
  }
  if (!pyEq(size, req(item, "size"))) {
    report.problem(T(where.zh + "：文件 " + name + " 有 " + size + " 字节，而不是声明的 " + pystr(item.size) + " 字节",
                     where.en + ": file " + name + " is " + size + " bytes, not the declared " + pystr(item.size)));
  }
}

function checkDeleted(item, where, leaf, report) {
  if (item.status !== "deleted") {
    report.problem(T(where.zh + "：监管日志记录了其文件已被删除，但它被列为 " + pyrepr(item.status),
                     where.en + ": the custody log records the deletion of its file, but it is listed as " +
                     pyrepr(item.status)));
    return;
  }
  if (!sameDigests(leaf, item) || !pyEq(get(leaf, "size"), req(item, "size"))) {
    report.problem(T(where.zh + "：其 'deleted' 监管事件记录的哈希值或大小不同",
                     where.en + ": its 'deleted' custody event records another hash or size"));
    return;
  }
  report.deleted += 1;
  const at = pystr(get(leaf, "at")), actor = pystr(get(leaf, "actor")), reason = pystr(get(leaf, "reason"));
  report.note(T(where.zh + "：其文件已按保存期限规定于 " + at + " 由 " + actor + " 删除（" + reason + "）；其哈希值和监管历史仍在",
                where.en + ": its file was deleted under the retention policy at " + at + " by " + actor + " (" +
                reason + "); its hash and custody history remain"));
}

/* Check every event; answer the item's own events whose inclusion holds, in log order. */
async function checkEvents(item, where, tree, packageId, report) {
  let exported = false, declared = false;
  const proven = [];
  for (const event of iter(req(item, "custody_events"))) {
    report.events += 1;
    const index = req(event, "leaf_index");
    const leaf = jsonLoads(req(event, "leaf"));
    if (!pyEq(get(leaf, "evidence_id"), item.id)) {
      report.problem(T(where.zh + "：第 " + pystr(index) + " 号叶子上的监管事件属于 " + pystr(get(leaf, "evidence_id")),
                       where.en + ": custody event at leaf " + pystr(index) + " belongs to " +
                       pystr(get(leaf, "evidence_id"))));
    }
    const holds = tree !== null && await inclusionHolds(event, where, leaf, tree, report);
    if (holds && pyEq(get(leaf, "evidence_id"), item.id)) { proven.push(leaf); }
    if (get(leaf, "action") === "declared") {
      declared = true;
      if (!sameDigests(leaf, item) || !pyEq(get(leaf, "size"), req(item, "size"))) {
        report.problem(T(where.zh + "：其监管 'declared' 事件记录的哈希值或大小不同",
                         where.en + ": its custody 'declared' event records another hash or size"));
      }
    }
    if (get(leaf, "action") === "exported" && pyEq(get(leaf, "package"), packageId)) { exported = true; }
  }
  if (!declared) {
    report.problem(T(where.zh + "：其监管 'declared' 事件不在证据包中", where.en + ": its custody 'declared' event is not in the package"));
  }
  if (!exported) {
    report.problem(T(where.zh + "：监管日志中没有本证据包的 'exported' 事件",
                     where.en + ": the custody log has no 'exported' event for this package"));
  }
  return proven;
}
