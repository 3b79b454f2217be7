/* How a package must spell what it holds, as strictly as the server and media/package_verify/spelling.py:
 * canonical base64url (URL-safe alphabet, no padding, unused trailing bits zero), hashes of 64 lower-case hex
 * digits, raw 32-byte Ed25519 keys, JSON objects; and RFC 8785 canonical JSON, the bytes the custody key signs.
 * What is spelled otherwise is Refused, with the server's own words (sync/jws.py `canonical_b64decode`).
 */

const B64URL = /^[A-Za-z0-9_-]*$/;
const CANONICAL_LAST = { 2: "AQgw", 3: "AEIMQUYcgkosw048" };
const HEX_HASH = /^[0-9a-f]{64}$/;
const UTF8 = new TextEncoder();

function utf8(text) {
  return UTF8.encode(text);
}

/* Strict UTF-8 (a byte order mark is kept, as Python's json.loads then refuses it). */
function decodeUtf8(bytes) {
  return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
}

function bytesFromBinary(raw) {
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) { out[i] = raw.charCodeAt(i); }
  return out;
}

/* Canonical base64url: the only spelling of its bytes; Refused otherwise. */
function b64d(text) {
  if (typeof text !== "string") { throw new Refused(T("不是字符串", "not a string")); }
  if (!B64URL.test(text)) {
    throw new Refused(T("不是 base64url（只允许 A-Z a-z 0-9 - _，不带填充）",
                        "not base64url (only A-Z a-z 0-9 - _, no padding)"));
  }
  const rest = text.length % 4;
  if (rest === 1) {
    throw new Refused(T("不是 base64url（长度比 4 的倍数多 1）",
                        "not base64url (its length is one more than a multiple of 4)"));
  }
  if (rest && !CANONICAL_LAST[rest].includes(text[text.length - 1])) {
    throw new Refused(T("不是规范的 base64url（最后一个字符未使用的位不为零）",
                        "not canonical base64url (the unused bits of its last character are not zero)"));
  }
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "==".slice(0, rest ? 4 - rest : 0);
  return bytesFromBinary(atob(b64));
}

/* Standard base64 with padding (RFC 4648 §4), as a timestamp token is written; null when it is not. */
function b64std(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4) { return null; }
  try {
    return bytesFromBinary(atob(text));
  } catch (error) {
    return null;
  }
}

/* A key typed by a person: blanks, standard base64's + and / and its = padding are forgiven (they cannot make a
 * package pass); its bits must still be spelled canonically. */
function typedKey(text) {
  return text.trim().replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function unhex(text) {
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) { out[i] = parseInt(text.substr(i * 2, 2), 16); }
  return out;
}

/* A 32-byte hash, written as 64 lower-case hex digits; Refused (saying why) otherwise. */
function hash32(text, what) {
  if (typeof text !== "string") { throw new Refused(T(what.zh + "不是十六进制字符串", what.en + " is not a hex string")); }
  if (!text) { throw new Refused(T(what.zh + "为空", what.en + " is empty")); }
  if (!HEX_HASH.test(text)) {
    const length = Array.from(text).length;
    if (length !== 64) {
      throw new Refused(T(what.zh + "有 " + length + " 个字符，而 32 字节哈希值是 64 个十六进制数字",
                          what.en + " has " + length + " characters, not the 64 hex digits of a 32-byte hash"));
    }
    throw new Refused(T(what.zh + "不是小写十六进制", what.en + " is not lower-case hex"));
  }
  return unhex(text);
}

/* Canonical base64url of a raw 32-byte Ed25519 public key, as raw bytes. */
function keyBytes(text) {
  const raw = b64d(text);
  if (raw.length !== 32) {
    throw new Refused(T("Ed25519 公钥是 32 字节，而不是 " + raw.length + " 字节",
                        "an Ed25519 public key is 32 bytes, not " + raw.length));
  }
  return raw;
}

/* A JSON object from UTF-8 bytes, or Refused saying what it is not. */
function jsonObject(raw, what) {
  let value;
  try {
    value = JSON.parse(decodeUtf8(raw));
  } catch (error) {
    const kind = error instanceof SyntaxError ? "JSONDecodeError" : "UnicodeDecodeError";
    throw new Refused(T("其" + what.zh + "不是 JSON（" + kind + "）", "its " + what.en + " is not JSON (" + kind + ")"));
  }
  if (!isDict(value)) { throw new Refused(T("其" + what.zh + "不是 JSON 对象", "its " + what.en + " is not a JSON object")); }
  return value;
}

/* RFC 8785 (JCS): keys sorted by UTF-16 code units, ECMAScript numbers and strings, no blanks. */
function canonicalJSON(value) {
  if (Array.isArray(value)) { return "[" + value.map(canonicalJSON).join(",") + "]"; }
  if (isDict(value)) {
    return "{" + Object.keys(value).sort().map((k) => JSON.stringify(k) + ":" + canonicalJSON(value[k])).join(",") + "}";
  }
  if (typeof value === "number" && !Number.isFinite(value)) { throw new Malformed("ValueError", "not a finite number"); }
  return JSON.stringify(value === undefined ? null : value);
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

/* A key's id: the first 16 hex digits of SHA-256 of its raw 32 bytes. */
async function keyIdOf(raw) {
  return hex(await sha256(raw)).slice(0, 16);
}
