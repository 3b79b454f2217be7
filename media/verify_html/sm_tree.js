/* The SM tree a package carries (media/package_verify/sm_tree.py; `custody.sm`, FIELDCASE_CUSTODY_SUITES=intl,sm):
 * its head, SM2-signed, at the same size as the tree head, and an SM3 inclusion proof of every custody leaf the
 * package proves, against that head's root.
 *
 * The leaves are the ones the rest of the package proves in the SHA-256 tree (each item's events, the case's, each
 * device's head), so each is proven in both trees from the same text. The SM2 key is the one the clerk enters (as
 * `--sm-public-key`), or, which proves only that the package is self-consistent, the one inside it. A package
 * without `custody.sm` was made where no SM tree is kept: it is checked as before.
 */

/* Every custody leaf the package proves, with where it is listed (as the SHA-256 checks name it). */
function provenLeaves(manifest) {
  const out = [];
  for (const item of iter(req(manifest, "evidence"))) {
    for (const event of iter(req(item, "custody_events"))) { out.push([itemWhere(item), event]); }
  }
  for (const event of iter(req(req(manifest, "case"), "custody_events"))) {
    const index = pystr(req(event, "leaf_index"));
    out.push([T("第 " + index + " 号叶子上的案件监管事件", "case custody event at leaf " + index), event]);
  }
  const devices = new Map(items(req(manifest, "devices")));
  for (const deviceId of pysorted(devices.keys())) {
    const device = devices.get(deviceId);
    if (get(device, "head") !== null) {
      out.push([T("设备 " + deviceId + "：终点", "device " + deviceId + ": head"), device.head]);
    }
  }
  return out;
}

/* The SM2 key the SM head must be signed with (its 65 bytes), or null, reported, when unusable. */
function smKey(sm, entered, report) {
  if (entered) {
    report.smKeySource = "entered";
    const typed = typedKey(entered);
    let raw;
    try {
      raw = sm2CustodyKey(b64d(typed));
    } catch (error) {
      if (!(error instanceof Refused)) { throw error; }
      report.problem(T("本页输入的 SM2 公钥不是 base64url 格式的 SM2 点（" + error.why.zh + "）",
                       "the SM2 public key entered on this page is not base64url of an SM2 point (" + error.why.en + ")"));
      return null;
    }
    report.smKeyId = sm2KeyId(raw);
    report.note(T("SM 树头已用本页输入的 SM2 公钥核验（key_id " + report.smKeyId + "）",
                  "SM tree head checked against the SM2 key entered on this page (key_id " + report.smKeyId + ")"));
    if (truthy(get(sm, "public_key")) && sm.public_key !== typed) {
      report.note(T("注意：证据包中写的是另一把 SM2 监管公钥（key_id " + pystr(get(sm, "key_id")) + "）",
                    "note: the package names another SM2 custody key (key_id " + pystr(get(sm, "key_id")) + ")"));
    }
    return raw;
  }
  report.smKeySource = "package";
  let raw;
  try {
    raw = sm2CustodyKey(b64d(req(sm, "public_key")));
  } catch (error) {
    if (!(error instanceof Refused)) { throw error; }
    report.problem(T("证据包中的 SM2 监管公钥不是有效的 SM2 公钥（" + error.why.zh + "）",
                     "the SM2 custody public key in the package is not a valid SM2 key (" + error.why.en + ")"));
    return null;
  }
  report.smKeyId = sm2KeyId(raw);
  report.note(T("警告：SM 树头是用证据包自带的 SM2 公钥核验的（key_id " + report.smKeyId + "）：这只说明证据包自身前后一致；" +
                "请在上方输入服务器公布的 SM2 公钥（GET /api/v1/custody/public-key?suite=sm）",
                "WARNING: SM tree head checked against the SM2 key inside the package (key_id " + report.smKeyId + "): " +
                "this only shows the package is self-consistent; enter the server's published SM2 key above " +
                "(GET /api/v1/custody/public-key?suite=sm)"));
  if (report.smKeyId !== get(sm, "key_id")) {
    report.problem(T("证据包的 SM2 监管公钥 key_id 与其公钥不符", "the package's SM2 custody key_id does not match its public key"));
  }
  return raw;
}

/* [size, root bytes] of the SM head when they are usable (its signature checked when there is a key), or null. */
function smHead(sm, manifest, key, given, report) {
  const head = req(sm, "tree_head"), intl = req(req(manifest, "custody"), "tree_head");
  const size = req(head, "tree_size");
  if (!isInt(size) || !pyEq(size, req(intl, "tree_size"))) {
    const other = pyrepr(intl.tree_size);
    report.problem(T("SM 树头：其 tree_size " + pyrepr(size) + " 不是树头的大小（" + other + "）：两棵树建在同样的叶子上，" +
                     "因此没有监管事件在 SM 树中得到证明",
                     "SM tree head: its tree_size " + pyrepr(size) + " is not the tree head's (" + other + "): the two " +
                     "trees are over the same leaves, so no custody event is proven in the SM tree"));
    return null;
  }
  let root;
  try {
    root = hash32(req(head, "root_hash"), T("其 root_hash", "its root_hash"));
  } catch (error) {
    if (!(error instanceof Refused)) { throw error; }
    report.problem(T("SM 树头（大小 " + size + "）：已拒绝，" + error.why.zh + "，因此没有监管事件在 SM 树中得到证明",
                     "SM tree head (size " + size + "): refused, " + error.why.en + ", so no custody event is proven " +
                     "in the SM tree"));
    return null;
  }
  if (key !== null) {
    let signature = null;
    try {
      signature = b64d(req(head, "signature"));
      if (signature.length !== CONSTANTS.sm2.signatureBytes) {
        throw new Refused(T(signature.length + " 字节，而 SM2 的 r ‖ s 是 64 字节",
                            signature.length + " bytes, not the 64 of SM2's r ‖ s"));
      }
    } catch (error) {
      if (!(error instanceof Refused)) { throw error; }
      report.problem(T("SM 树头（大小 " + size + "）：已拒绝，其签名" + error.why.zh + "，因此未核验",
                       "SM tree head (size " + size + "): refused, its signature is " + error.why.en + ", so it was " +
                       "not checked"));
      signature = null;
    }
    if (signature !== null && !sm2Verify(key, headPayload(head), signature)) {
      report.problem(T("SM 树头（大小 " + size + "）：其 SM2 签名不能用" + (given ? "输入的" : "证据包中的") + " SM2 公钥验证通过" +
                       "（SM 树头或根哈希被伪造或改动，或是另一台服务器的公钥）",
                       "SM tree head (size " + size + "): its SM2 signature does not verify with the " +
                       (given ? "given" : "package") + " SM2 key (forged or altered SM head or root, or another " +
                       "server's key)"));
    }
  }
  return [size, root];
}

async function checkSmTree(manifest, entered, report) {
  const sm = get(req(manifest, "custody"), "sm");
  if (sm === null) {
    if (entered) {
      report.note(T("证据包中没有 SM 树（custody.sm），因此输入的 SM2 公钥没有核验任何内容",
                    "the package carries no SM tree (custody.sm), so the SM2 key entered on this page checked nothing"));
    }
    return;
  }
  const key = smKey(sm, entered, report);
  const tree = smHead(sm, manifest, key, Boolean(entered), report);
  report.smTreeSize = tree ? tree[0] : null;
  const proofs = req(sm, "proofs");
  if (!isDict(proofs)) {
    report.problem(T("SM 树：其证明不是从叶子序号到证明的对象", "SM tree: its proofs are not an object of leaf index to proof"));
    return;
  }
  const listed = new Set();
  for (const [where, event] of provenLeaves(manifest)) {
    const index = req(event, "leaf_index");
    listed.add(pystr(index));
    const leaf = jsonLoads(req(event, "leaf"));
    const action = pystr(get(leaf, "action"));
    const what = T(where.zh + "：第 " + pystr(index) + " 号叶子上的监管事件（" + action + "）",
                   where.en + ": custody event at leaf " + pystr(index) + " (" + action + ")");
    const proof = get(proofs, pystr(index));
    if (proof === null) {
      report.problem(T(what.zh + "：证据包中没有它在 SM 树中的 SM3 包含证明",
                       what.en + ": the package carries no SM3 inclusion proof for it in the SM tree"));
      continue;
    }
    if (tree === null) { continue; }
    const [size, root] = tree;
    const against = T("不能针对 SM 树头（大小 " + size + "）成立", "does not hold against the SM tree head (size " + size + ")");
    let hashes;
    try {
      if (!Array.isArray(proof)) { throw new Refused(T("其 SM 证明不是哈希值列表", "its SM proof is not a list of hashes")); }
      hashes = proof.map((p, n) => hash32(p, T("SM 证明中第 " + n + " 个哈希值", "SM proof hash " + n)));
    } catch (error) {
      if (!(error instanceof Refused)) { throw error; }
      report.problem(T(what.zh + "：已拒绝，" + error.why.zh + "：其 SM3 包含证明" + against.zh,
                       what.en + ": refused, " + error.why.en + ": its SM3 inclusion proof " + against.en));
      continue;
    }
    const problem = await checkInclusion(await SM3_TREE.leaf(event.leaf), index, size, hashes, root, SM3_TREE);
    if (problem) {
      report.problem(T(what.zh + "：其 SM3 包含证明" + against.zh + "：" + problem.zh,
                       what.en + ": its SM3 inclusion proof " + against.en + ": " + problem.en));
    }
  }
  const extra = Object.keys(proofs).filter((k) => !listed.has(k))
    .sort((a, b) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0));
  for (const index of extra) {
    report.problem(T("SM 树：有一个第 " + index + " 号叶子的证明，而证据包并未列出这个叶子",
                     "SM tree: a proof for leaf " + index + ", which the package does not list"));
  }
  if (tree !== null) {
    report.note(T("SM 树头（SM3、SM2）大小 " + tree[0] + "：其中核验了 " + listed.size + " 个监管叶子",
                  "SM tree head (SM3, SM2) at size " + tree[0] + ": " + listed.size + " custody leaves checked in it"));
  }
}
