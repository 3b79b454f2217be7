/* The tree head's RFC 3161 time-stamp token, if it has one: `timestamp_token` in the manifest's tree head, the
 * standard base64 of a DER TimeStampToken (a CMS ContentInfo whose SignedData carries a TSTInfo). What this page
 * checks is its hash binding: the TSTInfo's messageImprint is SHA-256 of exactly the bytes the custody key signed
 * (`head_payload`), so the token's time is a time of this head. Whose time it is (the authority's signature over
 * the token, its certificate, and the chain to a TSA the reader trusts) is left to `fieldcase verify-package
 * --tsa-cert`: a signature made with the certificate inside the token proves nothing by itself (anyone can make
 * such a certificate), and a page opened from disk holds no anchor. The page says so in its note.
 *
 * A browser has no ASN.1 library and the page loads no script, hence the few lines of DER below (definite
 * lengths, low tag numbers: what DER allows).
 */

const SIGNED_DATA = "1.2.840.113549.1.7.2";
const TST_INFO = "1.2.840.113549.1.9.16.1.4";

class DerError extends Error {
  constructor(why) {
    super(why.en);
    this.why = why;
  }
}

/* A token that reads, but is not one over a tree head. */
class NotATreeHeadToken extends DerError {}

/* The TLV at `at`: {tag, body (where its content starts), end}. */
function derAt(bytes, at, end) {
  if (at + 2 > end) { throw new DerError(T("数据被截断", "truncated")); }
  const tag = bytes[at];
  if ((tag & 0x1f) === 0x1f) { throw new DerError(T("使用了高位标签号", "a high tag number")); }
  let length = bytes[at + 1], body = at + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0) { throw new DerError(T("长度不定（BER，不是 DER）", "an indefinite length (BER, not DER)")); }
    if (count > 4 || body + count > end) { throw new DerError(T("长度无法读取", "an unreadable length")); }
    length = 0;
    for (let i = 0; i < count; i++) { length = length * 256 + bytes[body + i]; }
    body += count;
  }
  if (body + length > end) { throw new DerError(T("数据被截断", "truncated")); }
  return { tag: tag, body: body, end: body + length };
}

function derChildren(bytes, node) {
  const out = [];
  for (let at = node.body; at < node.end;) {
    const child = derAt(bytes, at, node.end);
    out.push(child);
    at = child.end;
  }
  return out;
}

function derExpect(node, tag, what) {
  if (!node || node.tag !== tag) { throw new DerError(T("缺少" + what.zh, "no " + what.en)); }
  return node;
}

/* A DER OBJECT IDENTIFIER's content as dotted text. */
function dottedOid(bytes) {
  const arcs = [];
  let value = 0;
  for (const b of bytes) {
    value = value * 128 + (b & 0x7f);
    if (!(b & 0x80)) { arcs.push(value); value = 0; }
  }
  if (!arcs.length) { return ""; }
  const first = arcs[0] < 80 ? Math.floor(arcs[0] / 40) : 2;
  return [first, arcs[0] - first * 40, ...arcs.slice(1)].join(".");
}

const HASH_NAMES = { "1.3.14.3.2.26": "sha1", "2.16.840.1.101.3.4.2.4": "sha224", "2.16.840.1.101.3.4.2.1": "sha256",
                     "2.16.840.1.101.3.4.2.2": "sha384", "2.16.840.1.101.3.4.2.3": "sha512", "1.2.840.113549.2.5": "md5" };

function oidOf(bytes, node, what) {
  return dottedOid(bytes.subarray(derExpect(node, 0x06, what).body, node.end));
}

/* {algorithm (its name), hashed (bytes), genTime (text)} of a TimeStampToken; DerError saying what is wrong. */
function readTimestampToken(token) {
  const unreadable = (why) => new DerError(T("无法作为 RFC 3161 时间戳令牌读取（" + why.zh + "）",
                                             "the token cannot be read as an RFC 3161 TimeStampToken (" + why.en + ")"));
  let info, type, explicit;
  try {
    info = derExpect(derAt(token, 0, token.length), 0x30, T(" ContentInfo", "ContentInfo"));
    if (info.end !== token.length) { throw new DerError(T("ContentInfo 之后还有多余字节", "bytes after the ContentInfo")); }
    [type, explicit] = derChildren(token, info);
    type = oidOf(token, type, T("内容类型", "content type"));
  } catch (error) {
    if (error instanceof DerError) { throw unreadable(error.why); }
    throw error;
  }
  if (type !== SIGNED_DATA) {
    throw new NotATreeHeadToken(T("令牌是 CMS " + type + "，不是签名数据", "the token is CMS " + type + ", not signed data"));
  }
  try {
    const signedData = derExpect(derChildren(token, derExpect(explicit, 0xa0, T("签名数据", "signed data")))[0], 0x30,
                                 T(" SignedData", "SignedData"));
    const encap = derExpect(derChildren(token, signedData)[2], 0x30, T(" encapContentInfo", "encapContentInfo"));
    const [contentType, content] = derChildren(token, encap);
    const signs = oidOf(token, contentType, T("内容类型", "content type"));
    if (signs !== TST_INFO) {
      throw new NotATreeHeadToken(T("令牌签的是 " + signs + "，不是 TSTInfo", "the token signs " + signs + ", not a TSTInfo"));
    }
    const octets = derExpect(derChildren(token, derExpect(content, 0xa0, T(" eContent", "eContent")))[0], 0x04,
                             T(" eContent", "eContent"));
    const tstInfo = derExpect(derAt(token, octets.body, octets.end), 0x30, T(" TSTInfo", "TSTInfo"));
    const fields = derChildren(token, tstInfo);
    const imprint = derExpect(fields[2], 0x30, T(" messageImprint", "messageImprint"));
    const [algorithm, hashed] = derChildren(token, imprint);
    const oid = oidOf(token, derChildren(token, derExpect(algorithm, 0x30, T("摘要算法", "hash algorithm")))[0],
                      T("摘要算法", "hash algorithm"));
    derExpect(hashed, 0x04, T(" hashedMessage", "hashedMessage"));
    const genTime = derExpect(fields[4], 0x18, T(" genTime", "genTime"));
    return { algorithm: HASH_NAMES[oid] || oid, hashed: token.subarray(hashed.body, hashed.end),
             genTime: String.fromCharCode(...token.subarray(genTime.body, genTime.end)) };
  } catch (error) {
    if (error instanceof DerError && !(error instanceof NotATreeHeadToken)) { throw unreadable(error.why); }
    throw error;
  }
}

/* "20261206073145.123Z" as "2026-12-06T07:31:45.123Z". */
function generalizedTime(text) {
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\.\d+)?Z$/.exec(text);
  return m ? m[1] + "-" + m[2] + "-" + m[3] + "T" + m[4] + ":" + m[5] + ":" + m[6] + (m[7] || "") + "Z" : text;
}

/* The token's bytes from its one spelling, standard padded base64 (media/custody/timestamps.py `decode_token`). */
function decodeToken(text) {
  if (typeof text !== "string" || !text) {
    throw new DerError(T("timestamp_token 不是 base64 字符串", "timestamp_token is not a base64 string"));
  }
  const raw = b64std(text);
  if (raw === null) { throw new DerError(T("timestamp_token 不是标准 base64", "timestamp_token is not standard base64")); }
  if (btoa(String.fromCharCode(...raw)) !== text) {
    throw new DerError(T("timestamp_token 的写法不规范（应为带填充的标准 base64）",
                         "timestamp_token is not spelled canonically (standard base64, padded)"));
  }
  return raw;
}

/* The binding of each head's token (media/package_verify/timestamp.py, without the authority's signature and
 * certificate, which this page cannot judge: see the top of this file): the intl head's imprints SHA-256 of the
 * signed head, the SM head's (a package with the SM tree) SM3 of it. */
async function checkTimestamp(manifest, report) {
  const custody = req(manifest, "custody");
  const intl = await checkHeadToken(req(custody, "tree_head"), INTL_TOKEN, report);
  if (intl !== null) { report.timestamped = intl; }
  if (has(custody, "sm")) { await checkHeadToken(req(req(custody, "sm"), "tree_head"), SM_TOKEN, report); }
}

const INTL_TOKEN = {algorithm: "sha256", label: "SHA-256", digest: (bytes) => sha256(bytes),
                    zh: "树头", en: "tree head"};
// asn1crypto names no SM3, so verify-package names it by its OID (GM/T 0006): the page says what it says.
const SM_TOKEN = {algorithm: "1.2.156.10197.1.401", label: "SM3", digest: async (bytes) => sm3(bytes),
                  zh: "国密树头", en: "SM tree head"};

/* The time the token gives, or null (no token, or one that does not bind this head: a problem then). */
async function checkHeadToken(head, kind, report) {
  if (!has(head, CONSTANTS.timestampField)) {
    report.note(T(kind.zh + "没有可信时间戳：证据包没有带上它的 RFC 3161 令牌",
                  kind.en + " not timestamped: the package carries no RFC 3161 token for it"));
    return null;
  }
  const size = pyrepr(get(head, "tree_size"));
  const failed = (why) => report.problem(T(kind.zh + "（大小 " + size + "）：其 RFC 3161 时间戳核验不通过：" + why.zh,
                                           kind.en + " (size " + size + "): its RFC 3161 timestamp does not check: " +
                                           why.en));
  let read;
  try {
    read = readTimestampToken(decodeToken(head[CONSTANTS.timestampField]));
  } catch (error) {
    if (!(error instanceof DerError)) { throw error; }
    failed(error.why);
    return null;
  }
  if (read.algorithm !== kind.algorithm) {
    failed(T("令牌的摘要算法是 " + read.algorithm + "，不是 " + kind.label,
             "the token imprints " + read.algorithm + ", not " + kind.label));
    return null;
  }
  if (!sameBytes(read.hashed, await kind.digest(headPayload(head)))) {
    failed(T("令牌摘要的是另一条消息，不是这个树头（是另一个树头的令牌？）",
             "the token imprints another message, not this tree head (a token of another head?)"));
    return null;
  }
  const when = generalizedTime(read.genTime);
  report.note(T(kind.zh + "由 RFC 3161 时间戳机构于 " + when + " 加盖时间戳：令牌的消息摘要就是已签名树头的 " + kind.label +
                "（时间戳机构的签名和证书未在本页核验：请用 fieldcase verify-package --tsa-cert）",
                kind.en + " timestamped at " + when + " (RFC 3161): the token's message imprint is the " + kind.label +
                " of the signed head (the authority's signature and certificate are not checked on this page: " +
                "use fieldcase verify-package --tsa-cert)"));
  return when;
}
