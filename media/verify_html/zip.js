/* The package ZIP, read as Python's zipfile reads it (so both verifiers see the same members and the same damage).
 *
 * The central directory is found from the end record (ZIP64 end record and extra fields for large files, as the
 * package writer makes them); names are UTF-8 when flag bit 11 says so, else code page 437. A member is read in
 * chunks straight from the picked file (File.slice): stored members as they are, DEFLATE members through the
 * browser's DecompressionStream("deflate-raw"). Its CRC-32 is checked as zipfile checks it: a member whose bytes
 * fail it was changed inside the archive and is Damaged, with zipfile's words.
 */

const CHUNK = 1024 * 1024;
const MAX32 = 0xffffffff;
const CP437_HIGH = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌" +
                   "█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0";

class NotAZip extends Error {}

class Damaged extends Error {}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) { c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; }
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(crc, bytes) {
  let c = ~crc;
  for (let i = 0; i < bytes.length; i++) { c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8); }
  return ~c >>> 0;
}

async function bytesAt(file, start, end) {
  return new Uint8Array(await file.slice(start, end).arrayBuffer());
}

function view(bytes) {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function u64(v, at) {
  return v.getUint32(at, true) + v.getUint32(at + 4, true) * 0x100000000;
}

function zipName(raw, flags) {
  if (flags & 0x800) { return new TextDecoder("utf-8").decode(raw); }
  return Array.from(raw, (b) => (b < 0x80 ? String.fromCharCode(b) : CP437_HIGH[b - 0x80])).join("");
}

function lastIndexOf(bytes, signature, before) {
  for (let i = Math.min(before, bytes.length - 4); i >= 0; i--) {
    if (bytes[i] === 0x50 && bytes[i + 1] === 0x4b && bytes[i + 2] === signature[0] && bytes[i + 3] === signature[1]) {
      return i;
    }
  }
  return -1;
}

/* The end record (ZIP64's when its locator is there): where the central directory is and how long it is. */
async function endRecord(file) {
  const size = file.size;
  if (size < 22) { return null; }
  const tailStart = Math.max(size - 65536 - 22, 0);
  const tail = await bytesAt(file, tailStart, size);
  let at = tail.length - 22;
  const exact = tail[at] === 0x50 && tail[at + 1] === 0x4b && tail[at + 2] === 5 && tail[at + 3] === 6 &&
                tail[at + 20] === 0 && tail[at + 21] === 0;
  if (!exact) {
    at = lastIndexOf(tail, [5, 6], tail.length - 4);
    if (at < 0 || at + 22 > tail.length) { return null; }
  }
  const v = view(tail.subarray(at, at + 22));
  const record = { location: tailStart + at, cdSize: v.getUint32(12, true), cdOffset: v.getUint32(16, true),
                   zip64: false };
  const locatorAt = record.location - 20;
  if (locatorAt < 0) { return record; }
  const locator = await bytesAt(file, locatorAt, locatorAt + 20);
  if (view(locator).getUint32(0, true) !== 0x07064b50) { return record; }
  if (view(locator).getUint32(4, true) !== 0 || view(locator).getUint32(16, true) > 1) {
    throw new NotAZip("zipfiles that span multiple disks are not supported");
  }
  const end64At = locatorAt - 56;
  if (end64At < 0) { return record; }
  const end64 = view(await bytesAt(file, end64At, end64At + 56));
  if (end64.getUint32(0, true) !== 0x06064b50) { return record; }
  return { location: record.location, cdSize: u64(end64, 40), cdOffset: u64(end64, 48), zip64: true };
}

/* zipfile's ZipInfo._decodeExtra: the ZIP64 extra field holds the sizes and offset that did not fit. */
function zip64Extra(entry, extra) {
  const v = view(extra);
  for (let at = 0; at + 4 <= extra.length;) {
    const id = v.getUint16(at, true), length = v.getUint16(at + 2, true);
    if (at + 4 + length > extra.length) {
      throw new NotAZip("Corrupt extra field " + id.toString(16).padStart(4, "0") + " (size=" + length + ")");
    }
    if (id === 0x0001) {
      let field = at + 4;
      for (const name of ["fileSize", "compressSize", "headerOffset"]) {
        if (entry[name] !== MAX32) { continue; }
        if (field + 8 > at + 4 + length) {
          throw new NotAZip("Corrupt extra field 0001 (size=" + length + ")");
        }
        entry[name] = u64(v, field);
        field += 8;
      }
    }
    at += 4 + length;
  }
}

/* The members of the ZIP in directory order: {name, method, flags, crc, compressSize, fileSize, headerOffset}. */
async function readZip(file) {
  const end = await endRecord(file);
  if (end === null) { throw new NotAZip("File is not a zip file"); }
  let concat = end.location - end.cdSize - end.cdOffset;
  if (end.zip64) { concat -= 56 + 20; }
  const start = end.cdOffset + concat;
  if (start < 0) { throw new NotAZip("Bad offset for central directory"); }
  const directory = await bytesAt(file, start, start + end.cdSize);
  const v = view(directory);
  const entries = [];
  for (let at = 0; at < end.cdSize;) {
    if (at + 46 > directory.length) { throw new NotAZip("Truncated central directory"); }
    if (v.getUint32(at, true) !== 0x02014b50) { throw new NotAZip("Bad magic number for central directory"); }
    const flags = v.getUint16(at + 8, true);
    const nameLength = v.getUint16(at + 28, true), extraLength = v.getUint16(at + 30, true);
    const commentLength = v.getUint16(at + 32, true);
    const rawName = directory.subarray(at + 46, at + 46 + nameLength);
    let name = zipName(rawName, flags);
    if (name.includes("\0")) { name = name.slice(0, name.indexOf("\0")); }
    const entry = { name: name, rawName: rawName, flags: flags, method: v.getUint16(at + 10, true),
                    crc: v.getUint32(at + 16, true), compressSize: v.getUint32(at + 20, true),
                    fileSize: v.getUint32(at + 24, true), headerOffset: v.getUint32(at + 42, true) };
    zip64Extra(entry, directory.subarray(at + 46 + nameLength, at + 46 + nameLength + extraLength));
    entry.headerOffset += concat;
    entries.push(entry);
    at += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

/* Where a member's data starts: after its local header, which must be one and name the same member. */
async function dataStart(file, entry) {
  const header = await bytesAt(file, entry.headerOffset, entry.headerOffset + 30);
  if (header.length !== 30) { throw new Damaged("Truncated file header"); }
  const v = view(header);
  if (v.getUint32(0, true) !== 0x04034b50) { throw new Damaged("Bad magic number for file header"); }
  const nameLength = v.getUint16(26, true), extraLength = v.getUint16(28, true);
  const raw = await bytesAt(file, entry.headerOffset + 30, entry.headerOffset + 30 + nameLength);
  if (zipName(raw, v.getUint16(6, true)) !== entry.name) {
    throw new Damaged("File name in directory " + pyrepr(entry.name) + " and header b" +
                      pyrepr(String.fromCharCode(...raw)) + " differ.");
  }
  return entry.headerOffset + 30 + nameLength + extraLength;
}

async function* storedChunks(file, start, end) {
  for (let at = start; at < end; at += CHUNK) { yield await bytesAt(file, at, Math.min(at + CHUNK, end)); }
}

async function* inflatedChunks(file, start, end) {
  const reader = file.slice(start, end).stream().pipeThrough(new DecompressionStream("deflate-raw")).getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) { return; }
      yield value;
    }
  } catch (error) {
    throw new Damaged("Error -3 while decompressing data: " + (error && error.message ? error.message : error));
  } finally {
    reader.releaseLock();
  }
}

/* Hand each chunk of a member's bytes to `take`, at most its declared size as zipfile does, checking its
 * CRC-32 at the end; Damaged when the archive does not hold the member it says it does. */
async function readMember(file, entry, take) {
  if (entry.flags & 0x1) { throw new Damaged("File " + pyrepr(entry.name) + " is encrypted, password required"); }
  if (entry.method !== 0 && entry.method !== 8) { throw new Damaged("That compression method is not supported"); }
  const start = await dataStart(file, entry);
  const end = start + entry.compressSize;
  if (end > file.size) { throw new Damaged("Truncated member data"); }
  const chunks = entry.method === 0 ? storedChunks(file, start, end) : inflatedChunks(file, start, end);
  let crc = 0, left = entry.fileSize;
  for await (const chunk of chunks) {
    if (left <= 0) { break; }
    const part = chunk.length > left ? chunk.subarray(0, left) : chunk;
    left -= part.length;
    crc = crc32(crc, part);
    await take(part);
  }
  if (crc !== entry.crc) { throw new Damaged("Bad CRC-32 for file " + pyrepr(entry.name)); }
}

/* A whole small member (the manifest, the index) as bytes. */
async function readWhole(file, entry) {
  const parts = [];
  let size = 0;
  await readMember(file, entry, (chunk) => { parts.push(chunk); size += chunk.length; });
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}
