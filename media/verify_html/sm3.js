/* SM3 (GB/T 32905-2016), the digest of the national algorithms: an SM2 device's record hashes, the SM custody
 * tree, an evidence file declared with `sm3`.
 *
 * `sm3(bytes)` is the vendored library's (sm-crypto-v2, vendor/README.md), over bytes held whole. It has no
 * incremental form, so a member above the page's limit (sha256.js) is hashed as it is read by `Sm3` below, the
 * standard's compression function on BlockHash's padding (the same as SHA-256's): the tests hash every member
 * both ways and hold both to the Python verifier's digests.
 */

function sm3(bytes) {
  return unhex(SmCryptoV2.sm3(bytes));
}

/* A suite's digest (CONSTANTS.suites[name].digest): SHA-256 by Web Crypto, or SM3. */
async function suiteDigest(suite, bytes) {
  return CONSTANTS.suites[suite].digest === "sm3" ? sm3(bytes) : sha256(bytes);
}

const SM3_IV = [0x7380166f, 0x4914b2b9, 0x172442d7, 0xda8a0600, 0xa96f30bc, 0x163138aa, 0xe38dee4d, 0xb0fb0e4e];

function rotl(x, n) {
  n %= 32;
  return n ? (x << n) | (x >>> (32 - n)) : x;
}

class Sm3 extends BlockHash {
  constructor() {
    super(SM3_IV);
    this.w = new Int32Array(68);
  }

  compress(bytes, at) {
    const w = this.w, h = this.h;
    for (let i = 0; i < 16; i++) {
      const j = at + i * 4;
      w[i] = (bytes[j] << 24) | (bytes[j + 1] << 16) | (bytes[j + 2] << 8) | bytes[j + 3];
    }
    for (let i = 16; i < 68; i++) {
      const x = w[i - 16] ^ w[i - 9] ^ rotl(w[i - 3], 15);
      w[i] = x ^ rotl(x, 15) ^ rotl(x, 23) ^ rotl(w[i - 13], 7) ^ w[i - 6];
    }
    let a = h[0] | 0, b = h[1] | 0, c = h[2] | 0, d = h[3] | 0, e = h[4] | 0, f = h[5] | 0, g = h[6] | 0,
        k = h[7] | 0;
    for (let j = 0; j < 64; j++) {
      const a12 = rotl(a, 12);
      const ss1 = rotl((a12 + e + rotl(j < 16 ? 0x79cc4519 : 0x7a879d8a, j)) | 0, 7);
      const ss2 = ss1 ^ a12;
      const ff = j < 16 ? a ^ b ^ c : (a & b) | (a & c) | (b & c);
      const gg = j < 16 ? e ^ f ^ g : (e & f) | (~e & g);
      const tt1 = (ff + d + ss2 + (w[j] ^ w[j + 4])) | 0;
      const tt2 = (gg + k + ss1 + w[j]) | 0;
      d = c; c = rotl(b, 9); b = a; a = tt1;
      k = g; g = rotl(f, 19); f = e; e = tt2 ^ rotl(tt2, 9) ^ rotl(tt2, 17);
    }
    h[0] ^= a; h[1] ^= b; h[2] ^= c; h[3] ^= d; h[4] ^= e; h[5] ^= f; h[6] ^= g; h[7] ^= k;
  }
}
