/* SHA-256 (and SM3) of a member read in chunks.
 *
 * Web Crypto's digest is not incremental: it needs the whole member in one buffer, and so does the vendored SM3.
 * Members up to STREAM_ABOVE bytes (256 MiB) are gathered and hashed by them; a larger one (a long video clip) is
 * hashed as it is read by the small FIPS 180-4 implementation below (and GB/T 32905's, sm3.js), so memory stays at
 * one chunk whatever the file's size. The page's `data-stream-above` attribute lowers the limit (the tests hash
 * every member both ways).
 */

const STREAM_ABOVE = 256 * 1024 * 1024;

const SHA256_K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/* A Merkle-Damgard hash of 64-byte blocks and a 64-bit big-endian bit length (SHA-256, SM3: sm3.js), fed as the
 * bytes are read; a subclass holds the state `h` (eight 32-bit words) and compresses one block into it. */
class BlockHash {
  constructor(initial) {
    this.h = new Uint32Array(initial);
    this.block = new Uint8Array(64);
    this.used = 0;
    this.length = 0;
  }

  update(bytes) {
    let at = 0;
    this.length += bytes.length;
    if (this.used) {
      const take = Math.min(64 - this.used, bytes.length);
      this.block.set(bytes.subarray(0, take), this.used);
      this.used += take;
      at = take;
      if (this.used < 64) { return; }
      this.compress(this.block, 0);
      this.used = 0;
    }
    for (; at + 64 <= bytes.length; at += 64) { this.compress(bytes, at); }
    this.block.set(bytes.subarray(at), 0);
    this.used = bytes.length - at;
  }

  digest() {
    const bits = this.length * 8;
    const tail = new Uint8Array(this.used < 56 ? 64 - this.used : 128 - this.used);
    tail[0] = 0x80;
    const view = new DataView(tail.buffer);
    view.setUint32(tail.length - 8, Math.floor(bits / 0x100000000));
    view.setUint32(tail.length - 4, bits >>> 0);
    this.update(tail);
    const out = new Uint8Array(32);
    const outView = new DataView(out.buffer);
    this.h.forEach((word, i) => outView.setUint32(i * 4, word));
    return out;
  }
}

class Sha256 extends BlockHash {
  constructor() {
    super([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    this.w = new Uint32Array(64);
  }

  compress(bytes, at) {
    const w = this.w, h = this.h;
    for (let i = 0; i < 16; i++) {
      const j = at + i * 4;
      w[i] = (bytes[j] << 24) | (bytes[j + 1] << 16) | (bytes[j + 2] << 8) | bytes[j + 3];
    }
    for (let i = 16; i < 64; i++) {
      const a = w[i - 15], b = w[i - 2];
      const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
      const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (k + S1 + ((e & f) ^ (~e & g)) + SHA256_K[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      k = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
  }
}

/* A member's SHA-256, and its SM3 when asked (`withSm3`: an evidence file whose item carries one), from one read:
 * Web Crypto (and the vendored SM3) over one buffer of its declared size when that is at most `limit` bytes (the
 * buffer is allocated once, so memory is the member and one chunk), else the incremental hashes (Sm3: sm3.js).
 * `digest` answers [SHA-256, SM3 or null], as bytes. */
class MemberHash {
  constructor(limit, declared, withSm3) {
    this.size = 0;
    this.withSm3 = Boolean(withSm3);
    this.buffer = declared <= limit ? new Uint8Array(declared) : null;
    this.streams = this.buffer ? null : [new Sha256(), this.withSm3 ? new Sm3() : null];
  }

  update(chunk) {
    if (this.buffer) {
      this.buffer.set(chunk, this.size);
    } else {
      this.streams.forEach((stream) => stream && stream.update(chunk));
    }
    this.size += chunk.length;
  }

  async digest() {
    if (this.streams) { return this.streams.map((stream) => stream && stream.digest()); }
    const whole = this.buffer.subarray(0, this.size);
    this.buffer = null;
    return [await sha256(whole), this.withSm3 ? sm3(whole) : null];
  }
}
