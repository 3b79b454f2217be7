/* The sealed index (media/package_verify/index.py): every member of the ZIP with its SHA-256 and size, signed with
 * the custody key. An added, removed, renamed or edited member is named; so is an index that cites another tree
 * head or package than the manifest does.
 */

async function checkIndex(members, manifest, key, report) {
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
  await indexMembers(index.members, members, report);
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

async function indexMembers(listed, members, report) {
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
  for (const member of present) {
    const entry = expected.get(member);
    if (entry === undefined) {
      report.problem(T("成员 " + member + "：不在已签名的索引中（被添加到证据包，或被改名）",
                       "member " + member + ": not in the signed index (added to the package, or renamed)"));
      continue;
    }
    let digest, size, sealed;
    try {
      [digest, size] = await members.digest(member);
      sealed = hex(hash32(get(entry, "sha256"), T("其封签的 sha256", "its sealed sha256")));
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
  }
  const there = new Set(present);
  for (const member of pysorted([...expected.keys()].filter((n) => !there.has(n)))) {
    report.problem(T("成员 " + member + "：在已签名的索引中，但不在证据包中（被删除，或被改名）",
                     "member " + member + ": in the signed index but not in the package (removed, or renamed)"));
  }
}
