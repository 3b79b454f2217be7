/* Bilingual text, and the few Python behaviours the messages must share with `fieldcase verify-package`.
 *
 * Every problem is a pair: Chinese for the clerk, English below it, the English word for word what the Python
 * verifier prints, so a report from either can be compared line by line. The English quotes values as Python's
 * repr() does (`'text'`, `None`, `['a', 'b']`). JSON numbers lose the int/float difference in a browser, so a
 * float such as 8.0 is written 8 here.
 *
 * Reading the manifest follows Python's rules too: where the Python verifier indexes (`item["id"]`) a missing
 * key or a value of the wrong type stops the check as "the manifest is malformed (KeyError: 'id')"; `get`
 * answers null for a missing key, like dict.get.
 */

function T(zh, en) {
  return { zh: zh, en: en };
}

class Malformed extends Error {
  /* What Python would raise reading the manifest (KeyError, TypeError, AttributeError, ValueError). */
  constructor(kind, message) {
    super(kind + ": " + message);
    this.kind = kind;
  }
}

class Refused extends Error {
  /* Something is not spelled as the protocol allows; what it claims is not checked. `why` is bilingual. */
  constructor(why) {
    super(why.en);
    this.why = why;
  }
}

function isDict(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function isInt(value) {
  return typeof value === "number" && Number.isInteger(value);
}

function pytype(value) {
  if (value === null || value === undefined) { return "NoneType"; }
  if (typeof value === "boolean") { return "bool"; }
  if (typeof value === "number") { return Number.isInteger(value) ? "int" : "float"; }
  if (typeof value === "string") { return "str"; }
  return Array.isArray(value) ? "list" : "dict";
}

function has(object, key) {
  return isDict(object) && Object.prototype.hasOwnProperty.call(object, key);
}

/* object[key], as Python would read it from JSON. */
function req(object, key) {
  if (isDict(object)) {
    if (!Object.prototype.hasOwnProperty.call(object, key)) { throw new Malformed("KeyError", pyrepr(key)); }
    return object[key];
  }
  if (Array.isArray(object)) {
    throw new Malformed("TypeError", "list indices must be integers or slices, not str");
  }
  if (typeof object === "string") { throw new Malformed("TypeError", "string indices must be integers, not 'str'"); }
  throw new Malformed("TypeError", "'" + pytype(object) + "' object is not subscriptable");
}

/* object.get(key, fallback), as Python would on the value JSON gave. */
function get(object, key, fallback) {
  if (!isDict(object)) { throw new Malformed("AttributeError", "'" + pytype(object) + "' object has no attribute 'get'"); }
  if (Object.prototype.hasOwnProperty.call(object, key)) { return object[key]; }
  return fallback === undefined ? null : fallback;
}

/* What `for x in value` walks in Python. */
function iter(value) {
  if (Array.isArray(value)) { return value; }
  if (typeof value === "string") { return Array.from(value); }
  if (isDict(value)) { return Object.keys(value); }
  throw new Malformed("TypeError", "'" + pytype(value) + "' object is not iterable");
}

/* dict.items() of a JSON object. */
function items(value) {
  if (!isDict(value)) { throw new Malformed("AttributeError", "'" + pytype(value) + "' object has no attribute 'items'"); }
  return Object.entries(value);
}

/* Python's truth of a JSON value. */
function truthy(value) {
  if (Array.isArray(value)) { return value.length > 0; }
  if (isDict(value)) { return Object.keys(value).length > 0; }
  return Boolean(value);
}

/* Python's == between JSON values (True == 1, as there). */
function pyEq(a, b) {
  if (a === undefined) { a = null; }
  if (b === undefined) { b = null; }
  if (typeof a === "boolean" && typeof b === "number") { return Number(a) === b; }
  if (typeof a === "number" && typeof b === "boolean") { return a === Number(b); }
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => pyEq(x, b[i]));
  }
  if (isDict(a) || isDict(b)) {
    if (!isDict(a) || !isDict(b)) { return false; }
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length && keys.every((k) => has(b, k) && pyEq(a[k], b[k]));
  }
  return a === b;
}

function reprString(text) {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of text) {
    const code = ch.codePointAt(0);
    if (ch === "\\" || ch === quote) { out += "\\" + ch; }
    else if (ch === "\n") { out += "\\n"; }
    else if (ch === "\r") { out += "\\r"; }
    else if (ch === "\t") { out += "\\t"; }
    else if (code < 0x20 || (code >= 0x7f && code < 0xa0)) { out += "\\x" + code.toString(16).padStart(2, "0"); }
    else if (code >= 0xd800 && code < 0xe000) { out += "\\u" + code.toString(16).padStart(4, "0"); }
    else { out += ch; }
  }
  return out + quote;
}

function reprNumber(value) {
  if (Number.isInteger(value) && Math.abs(value) < 1e16) { return String(value); }
  return String(value).replace(/e([+-])(\d)$/, "e$10$2");
}

/* Python's repr() of a JSON value. */
function pyrepr(value) {
  if (value === null || value === undefined) { return "None"; }
  if (value === true) { return "True"; }
  if (value === false) { return "False"; }
  if (typeof value === "number") { return reprNumber(value); }
  if (typeof value === "string") { return reprString(value); }
  if (Array.isArray(value)) { return "[" + value.map(pyrepr).join(", ") + "]"; }
  return "{" + Object.entries(value).map(([k, v]) => reprString(k) + ": " + pyrepr(v)).join(", ") + "}";
}

/* Python's str() of a JSON value, as an f-string writes it. */
function pystr(value) {
  return typeof value === "string" ? value : pyrepr(value);
}

/* Python's sorted() of strings or of numbers (code point order; UTF-16 order agrees below U+10000). */
function pysorted(values) {
  return Array.from(values).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/* "1 hash" / "3 hashes", bilingual. */
function hashesText(count) {
  return T(count + " 个哈希值", count === 1 ? "1 hash" : count + " hashes");
}
