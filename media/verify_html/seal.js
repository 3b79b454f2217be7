/* The sealed index (media/package_verify/index.py): every member of the ZIP with its SHA-256 and size, signed with
 * the custody key. An added, removed, renamed or edited member is named; so is an index that cites another tree
 * head or package than the manifest does.
 *
 * A package with the SM tree is sealed in SM2 too (`sm_signature`, every member's `sm3`): that seal is checked with
 * the key the SM tree head is checked with (sm_tree.js, which reports what is wrong with that key), and each
 * member's SM3 against the index, in the read that takes its SHA-256.
 */

/* `enteredSm`: the SM2 custody key the clerk typed (as `--sm-public-key`), or empty. */
async function checkIndex(members, manifest, key, report, enteredSm) {
  const name = CONSTANTS.indexName;
  let index;
  try {
    index = JSON.parse(decodeUtf8(await members.read(name)));
  } catch (error) {
    if (error instanceof NoMember) {
      report.problem(T(name + " 缺失：证据包没有封签，因此看不出成员被添加、删除或修改",
                       name + " is missing: the package is not sealed, so members added, removed or edited could not " +
                       "be seen"));
      return;
    }
    if (error instanceof SyntaxError || error instanceof TypeError || error instanceof Damaged) {
      report.problem(T(name + " 无法读取（" + error.message + "）", name + " cannot be read (" + error.message + ")"));
      return;
    }
    throw error;
  }
  if (!isDict(index) || get(index, "format") !== CONSTANTS.indexFormat || !Array.isArray(get(index, "members"))) {
    report.problem(T(name + " 不是 fieldcase 证据包索引", name + " is not a fieldcase package index"));
    return;
  }
  await indexSignature(index, key, report);
  const inSm = indexSmSeal(index, manifest, enteredSm, report);
  const head = req(req(manifest, "custody"), "tree_head");
  const cited = get(index, "tree_head");
  if (!isDict(cited) || CONSTANTS.headFields.some((k) => !pyEq(get(cited, k), get(head, k)))) {
    report.problem(T(name + "：它引用的树头与 manifest.json 的不同", name + ": it cites another tree head than manifest.json"));
  }
  const pkg = req(manifest, "package");
  if (!pyEq(get(index, "package"), req(pkg, "id")) || !pyEq(get(index, "case_id"), req(pkg, "case_id"))) {
    report.problem(T(name + "：它指明的证据包或案件与 manifest.json 的不同",
                     name + ": it names another package or case than manifest.json"));
  }
  await indexMembers(index.members, members, inSm, report);
}

async function indexSignature(index, key, report) {
  const name = CONSTANTS.indexName;
  if (key === null) { return; }  // no usable custody key: already reported with the tree head
  let signature;
  try {
    signature = b64d(get(index, "signature"));
    if (signature.length !== 64) {
      throw new Refused(T(signature.length + " 字节，而 Ed25519 签名是 64 字节", signature.length + " bytes, not the 64 of Ed25519"));
    }
  } catch (error) {
    if (!(error instanceof Refused)) { throw error; }
    report.problem(T(name + "：已拒绝，其签名" + error.why.zh + "，因此它所列的内容都没有担保",
                     name + ": refused, its signature is " + error.why.en + ", so nothing it lists is vouched for"));
    return;
  }
  const unsigned = Object.fromEntries(Object.entries(index).filter(([k]) => k !== "signature"));
  if (!(await ed25519Verify(key, signature, utf8(canonicalJSON(unsigned))))) {
    report.problem(T(name + "：其签名不能用监管公钥验证通过（索引被改动过，或由另一把密钥生成）",
                     name + ": its signature does not verify with the custody key (the index was altered, or made by " +
                     "another key)"));
  }
}

/* Whether the index is sealed in SM2; its SM2 signature checked when the package's SM tree gives a usable key. */
function indexSmSeal(index, manifest, enteredSm, report) {
  const name = CONSTANTS.indexName;
  const sm = get(req(manifest, "custody"), "sm");
  if (!has(index, "sm_signature")) {
    if (sm !== null) {
      report.note(T(name + " 没有 SM2 封签（在有此封签之前生成的证据包）：其成员只由 Ed25519 对 SHA-256 封签",
                    name + " is not sealed in SM2 (a package made before the seal was): its members are sealed by " +
                    "Ed25519 over SHA-256 alone"));
    }
    return false;
  }
  if (sm === null) {
    report.problem(T(name + "：它有 SM2 封签，但证据包中没有 SM 树（custody.sm），因此没有可核验该封签的 SM2 公钥",
                     name + ": it is sealed in SM2, but the package carries no SM tree (custody.sm) whose SM2 key " +
                     "could check the seal"));
    return true;
  }
  const key = smKey(sm, enteredSm, new Report());  // its notes and problems are the SM tree head's, reported there
  if (key === null) { return true; }
  let signature;
  try {
    signature = b64d(index.sm_signature);
    if (signature.length !== CONSTANTS.sm2.signatureBytes) {
      throw new Refused(T(signature.length + " 字节，而 SM2 的 r ‖ s 是 64 字节",
                          signature.length + " bytes, not the 64 of SM2's r ‖ s"));
    }
  } catch (error) {
    if (!(error instanceof Refused)) { throw error; }
    report.problem(T(name + "：已拒绝，其 SM2 签名" + error.why.zh + "，因此它所列的内容都没有 SM2 担保",
                     name + ": refused, its SM2 signature is " + error.why.en + ", so nothing it lists is vouched " +
                     "for in SM2"));
    return true;
  }
  const unsigned = Object.fromEntries(Object.entries(index).filter(([k]) => k !== "signature" && k !== "sm_signature"));
  if (!sm2Verify(key, utf8(canonicalJSON(unsigned)), signature)) {
    report.problem(T(name + "：其 SM2 签名不能用" + (enteredSm ? "输入的" : "证据包中的") + " SM2 公钥验证通过（索引被改动过，" +
                     "或由另一把密钥生成）",
                     name + ": its SM2 signature does not verify with the " + (enteredSm ? "given" : "package") +
                     " SM2 key (the index was altered, or made by another key)"));
  }
  return true;
}

async function indexMembers(listed, members, inSm, report) {
  const name = CONSTANTS.indexName;
  const expected = new Map();
  for (const entry of listed) {
    if (!isDict(entry) || typeof get(entry, "name") !== "string") {
      report.problem(T(name + "：有一项不是成员（name, sha256, size）", name + ": an entry is not a member (name, sha256, size)"));
      continue;
    }
    if (expected.has(entry.name)) {
      report.problem(T(name + "：成员 " + entry.name + " 被列出两次", name + ": member " + entry.name + " is listed twice"));
    }
    expected.set(entry.name, entry);
  }
  const present = members.names().filter((n) => n !== name);
  const withoutSm3 = [];
  for (const member of present) {
    const entry = expected.get(member);
    if (entry === undefined) {
      report.problem(T("成员 " + member + "：不在已签名的索引中（被添加到证据包，或被改名）",
                       "member " + member + ": not in the signed index (added to the package, or renamed)"));
      continue;
    }
    const withSm3 = has(entry, "sm3");
    let digest, size, sm3, sealed, sealedSm3;
    try {
      [digest, size, sm3] = withSm3 ? await members.digests(member) : [...(await members.digest(member)), null];
      sealed = hex(hash32(get(entry, "sha256"), T("其封签的 sha256", "its sealed sha256")));
      sealedSm3 = withSm3 ? hex(hash32(entry.sm3, T("其封签的 sm3", "its sealed sm3"))) : null;
    } catch (error) {
      if (error instanceof Damaged) {
        report.problem(T("成员 " + member + "：已损坏（" + error.message + "）；其字节被改动过",
                         "member " + member + ": damaged (" + error.message + "); its bytes were altered"));
        continue;
      }
      if (error instanceof Refused) {
        report.problem(T(name + "：成员 " + member + " 已拒绝，" + error.why.zh, name + ": member " + member + " refused, " +
                         error.why.en));
        continue;
      }
      throw error;
    }
    if (digest !== sealed || !pyEq(size, get(entry, "size"))) {
      const sealedSize = pystr(get(entry, "size"));
      report.problem(T("成员 " + member + "：不是索引封签的那个成员（SHA-256 " + digest + "，" + size + " 字节；封签的是 " +
                       sealed + "，" + sealedSize + " 字节）：它被修改过",
                       "member " + member + ": not the member the index sealed (SHA-256 " + digest + ", " + size +
                       " bytes; sealed " + sealed + ", " + sealedSize + " bytes): it was edited"));
    }
    if (sealedSm3 === null) {
      if (inSm) { withoutSm3.push(member); }
    } else if (sm3 !== sealedSm3) {
      report.problem(T("成员 " + member + "：不是索引封签的那个成员（SM3 " + sm3 + "；封签的是 " + sealedSm3 + "）：它被修改过",
                       "member " + member + ": not the member the index sealed (SM3 " + sm3 + "; sealed " + sealedSm3 +
                       "): it was edited"));
    }
  }
  const there = new Set(present);
  for (const member of pysorted([...expected.keys()].filter((n) => !there.has(n)))) {
    report.problem(T("成员 " + member + "：在已签名的索引中，但不在证据包中（被删除，或被改名）",
                     "member " + member + ": in the signed index but not in the package (removed, or renamed)"));
  }
  if (withoutSm3.length) {
    report.note(T(name + "：" + withoutSm3.join(", ") + " 没有 SM3（在服务器计算 SM3 之前核验、此后也未补算的证据项的文件）：" +
                  "对它们，SM2 封签只覆盖 SHA-256",
                  name + ": no SM3 for " + withoutSm3.join(", ") + " (files of items verified before the server " +
                  "computed SM3, not backfilled since): the SM2 seal covers their SHA-256 alone"));
  }
}
