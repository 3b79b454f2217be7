/* The custody tree head a package cites (media/package_verify/heads.py): its size and root, the custody key it
 * must be signed with (the one the clerk enters, or, which proves only self-consistency, the one inside the
 * package), its signature, and each custody event's inclusion proof against it.
 */

const ED25519 = { name: "Ed25519" };

/* The curve (RFC 8032 §5.1): the field prime p, d, and the order L of the prime-order subgroup. */
const ED_P = 2n ** 255n - 19n;
const ED_D = 37095705934669439343138083508754565189542113879843219016388785533085940283555n;
const ED_L = 2n ** 252n + 27742317777372353535851937790883648493n;

/* The encodings of the 8 points of small order, compared with x's sign bit cleared: libsodium's blocklist
 * (src/libsodium/crypto_core/ed25519/ref10/ed25519_ref10.c `ge25519_has_small_order`), hex of the 32 bytes:
 * y = 0 (the two of order 4), 1 (the identity), the two y of the four of order 8, p − 1 (order 2), and p and
 * p + 1 (0 and 1 again, not reduced). */
const ED_SMALL_ORDER = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
];

function edMod(a) {
  const r = a % ED_P;
  return r < 0n ? r + ED_P : r;
}

function edPow(a, e) {
  let r = 1n;
  for (a = edMod(a); e > 0n; e >>= 1n, a = a * a % ED_P) { if (e & 1n) { r = r * a % ED_P; } }
  return r;
}

/* The point [x, y] 32 bytes spell (RFC 8032 §5.1.3), or null when y is not below p or no x fits it. */
function edDecode(raw) {
  const y = bigint(Uint8Array.from(raw).reverse()) & (2n ** 255n - 1n);
  if (y >= ED_P) { return null; }
  const u = edMod(y * y - 1n), v = edMod(ED_D * y * y + 1n);
  let x = u * edPow(v, 3n) * edPow(u * edPow(v, 7n), (ED_P - 5n) / 8n) % ED_P;
  if (edMod(v * x * x) !== u) {
    if (edMod(v * x * x) !== edMod(-u)) { return null; }
    x = x * edPow(2n, (ED_P - 1n) / 4n) % ED_P;  // times √−1
  }
  return [(x & 1n) === BigInt(raw[31] >> 7) ? x : edMod(-x), y];
}

/* P + Q in extended coordinates (RFC 8032 §5.1.4), complete: it doubles too. */
function edAdd([x1, y1, z1, t1], [x2, y2, z2, t2]) {
  const a = (y1 - x1) * (y2 - x2), b = (y1 + x1) * (y2 + x2), c = 2n * ED_D * t1 * t2 % ED_P, d = 2n * z1 * z2;
  const e = b - a, f = d - c, g = d + c, h = b + a;
  return [edMod(e * f), edMod(g * h), edMod(f * g), edMod(e * h)];
}

/* Whether the 32 bytes are a key libsodium's crypto_core_ed25519_is_valid_point takes, the test the server and
 * verify-package load an Ed25519 key with (backend/core/crypto/suites.py): y below p, not a point of small order,
 * on the curve, [L]P the identity. Web Crypto checks none of it (Chromium imports any 32 bytes), and under a point
 * of small order a forged signature (identity ‖ 0³²) verifies for any message. */
function ed25519ValidPoint(raw) {
  const masked = Uint8Array.from(raw);
  masked[31] &= 0x7f;
  const point = raw.length === 32 && !ED_SMALL_ORDER.includes(hex(masked)) ? edDecode(raw) : null;
  if (point === null) { return false; }
  let sum = [0n, 1n, 1n, 0n], add = [point[0], point[1], 1n, point[0] * point[1] % ED_P];
  for (let k = ED_L; k > 0n; k >>= 1n, add = edAdd(add, add)) { if (k & 1n) { sum = edAdd(sum, add); } }
  return sum[0] === 0n && sum[1] === sum[2];
}

/* Web Crypto's Ed25519 key from raw bytes; Refused in the server's words (backend/core/crypto/suites.py) for a
 * point it refuses, or with the browser's reason when the browser will not take them. */
async function ed25519Key(raw) {
  if (!ed25519ValidPoint(raw)) {
    throw new Refused(T("公钥不是有效的 Ed25519 点", "the public key is not a valid Ed25519 point"));
  }
  try {
    return await crypto.subtle.importKey("raw", raw, ED25519, false, ["verify"]);
  } catch (error) {
    throw new Refused(T("浏览器不接受这把公钥（" + error.message + "）", "the browser refuses it (" + error.message + ")"));
  }
}

async function ed25519Verify(key, signature, data) {
  try {
    return await crypto.subtle.verify(ED25519, key, signature, data);
  } catch (error) {
    return false;
  }
}

/* Whether this browser's Web Crypto verifies Ed25519 (Chromium 137, Firefox 129, Safari 17 and later). */
async function ed25519Supported() {
  try {
    await ed25519Key(unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"));
    return true;
  } catch (error) {
    return false;
  }
}

/* [size, root bytes] of the tree head, or null (reported) when they are not a size and a 32-byte hash. */
function headTree(head, report) {
  const size = req(head, "tree_size");
  if (!isInt(size) || size < 0) {
    report.problem(T("树头：其 tree_size " + pyrepr(size) + " 不是非负整数，因此无法针对它证明任何监管事件",
                     "tree head: its tree_size " + pyrepr(size) + " is not a non-negative integer, so no custody " +
                     "event can be proven against it"));
    return null;
  }
  try {
    return [size, hash32(req(head, "root_hash"), T("其 root_hash", "its root_hash"))];
  } catch (error) {
    if (!(error instanceof Refused)) { throw error; }
    report.problem(T("树头（大小 " + size + "）：已拒绝，" + error.why.zh + "，因此无法针对它证明任何监管事件",
                     "tree head (size " + size + "): refused, " + error.why.en + ", so no custody event can be " +
                     "proven against it"));
    return null;
  }
}

/* The key that must have signed the tree head and the index: the one entered on the page, or (which proves only
 * that the package is self-consistent) the one inside the package. Null, reported, if unusable. */
async function custodyKey(manifest, entered, report) {
  const custody = req(manifest, "custody");
  if (entered) {
    report.keySource = "entered";
    const typed = typedKey(entered);
    let raw, key;
    try {
      raw = keyBytes(typed);
      key = await ed25519Key(raw);
    } catch (error) {
      if (!(error instanceof Refused)) { throw error; }
      report.problem(T("本页输入的公钥不是 base64url 格式的 Ed25519 公钥（" + error.why.zh + "）",
                       "the public key entered on this page is not a base64url Ed25519 key (" + error.why.en + ")"));
      return null;
    }
    report.keyId = await keyIdOf(raw);
    report.note(T("树头已用本页输入的公钥核验（key_id " + report.keyId + "）",
                  "tree head checked against the key entered on this page (key_id " + report.keyId + ")"));
    if (truthy(get(custody, "public_key")) && custody.public_key !== typed) {
      report.note(T("注意：证据包中写的是另一把监管公钥（key_id " + pystr(get(custody, "key_id")) + "）",
                    "note: the package names another custody key (key_id " + pystr(get(custody, "key_id")) + ")"));
    }
    return key;
  }
  report.keySource = "package";
  let raw, key;
  try {
    raw = keyBytes(req(custody, "public_key"));
    key = await ed25519Key(raw);
  } catch (error) {
    if (!(error instanceof Refused)) { throw error; }
    report.problem(T("证据包中的监管公钥不是有效的 Ed25519 公钥（" + error.why.zh + "）",
                     "the custody public key in the package is not a valid Ed25519 key (" + error.why.en + ")"));
    return null;
  }
  report.keyId = await keyIdOf(raw);
  report.note(T("警告：树头是用证据包自带的公钥核验的（key_id " + report.keyId + "）：这只说明证据包自身前后一致，" +
                "不能说明它出自服务器；请在上方输入服务器公布的公钥（GET /api/v1/custody/public-key）",
                "WARNING: tree head checked against the key inside the package (key_id " + report.keyId + "): this " +
                "only shows the package is self-consistent, not that the server issued it; enter the server's " +
                "published key above (GET /api/v1/custody/public-key)"));
  if (report.keyId !== get(custody, "key_id")) {
    report.problem(T("证据包的监管公钥 key_id 与其公钥不符", "the package's custody key_id does not match its public key"));
  }
  return key;
}

/* The bytes a tree head's signature covers: media/custody/keys.py `head_payload`. */
function headPayload(head) {
  return utf8(canonicalJSON({ tree_size: req(head, "tree_size"), root_hash: req(head, "root_hash"),
                              timestamp: req(head, "timestamp") }));
}

async function checkTreeHead(manifest, key, given, report) {
  const head = req(req(manifest, "custody"), "tree_head");
  if (key === null) { return; }
  const signed = headPayload(head);
  const size = pystr(req(head, "tree_size"));
  let signature;
  try {
    signature = b64d(req(head, "signature"));
    if (signature.length !== 64) {
      throw new Refused(T(signature.length + " 字节，而 Ed25519 签名是 64 字节",
                          signature.length + " bytes, not the 64 of Ed25519"));
    }
  } catch (error) {
    if (!(error instanceof Refused)) { throw error; }
    report.problem(T("树头（大小 " + size + "）：已拒绝，其签名" + error.why.zh + "，因此未核验",
                     "tree head (size " + size + "): refused, its signature is " + error.why.en + ", so it was not " +
                     "checked"));
    return;
  }
  if (!(await ed25519Verify(key, signature, signed))) {
    report.problem(T("树头（大小 " + size + "）：其签名不能用" + (given ? "输入的" : "证据包中的") + "公钥验证通过" +
                     "（树头被伪造或改动，或是另一台服务器的公钥）",
                     "tree head (size " + size + "): its signature does not verify with the " +
                     (given ? "given" : "package") + " key (forged or altered head, or another server's key)"));
  }
}

/* Whether the event's inclusion proof holds against the tree head (RFC 9162 §2.1.3.2); problems reported. */
async function inclusionHolds(event, where, leaf, tree, report) {
  const [size, root] = tree;
  const index = req(event, "leaf_index"), text = req(event, "leaf");
  const action = pystr(get(leaf, "action"));
  const what = T(where.zh + "：第 " + pystr(index) + " 号叶子上的监管事件（" + action + "）",
                 where.en + ": custody event at leaf " + pystr(index) + " (" + action + ")");
  if (!isInt(index) || index < 0) {
    report.problem(T(what.zh + "：已拒绝，其 leaf_index 不是非负整数",
                     what.en + ": refused, its leaf_index is not a non-negative integer"));
    return false;
  }
  const listed = req(event, "proof");
  if (!Array.isArray(listed)) {
    report.problem(T(what.zh + "：已拒绝，其证明不是哈希值列表", what.en + ": refused, its proof is not a list of hashes"));
    return false;
  }
  let proof;
  try {
    proof = listed.map((p, n) => hash32(p, T("证明中第 " + n + " 个哈希值", "proof hash " + n)));
  } catch (error) {
    if (!(error instanceof Refused)) { throw error; }
    report.problem(T(what.zh + "：已拒绝，" + error.why.zh + "：其包含证明不能针对树头（大小 " + size + "）成立",
                     what.en + ": refused, " + error.why.en + ": its inclusion proof does not hold against the tree " +
                     "head (size " + size + ")"));
    return false;
  }
  if (typeof text !== "string") {
    throw new Malformed("AttributeError", "'" + pytype(text) + "' object has no attribute 'encode'");
  }
  const problem = await checkInclusion(await leafHash(text), index, size, proof, root);
  if (problem) {
    report.problem(T(what.zh + "：其包含证明不能针对树头（大小 " + size + "）成立：" + problem.zh,
                     what.en + ": its inclusion proof does not hold against the tree head (size " + size + "): " +
                     problem.en));
    return false;
  }
  return true;
}
