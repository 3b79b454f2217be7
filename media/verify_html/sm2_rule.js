/* The SM2 signature check of backend/core/crypto/sm2.py `verify`, its one JavaScript home: verify.html has it
 * inlined, and the console's in-browser custody check loads the same file (/console/vendor/sm2-rule.js).
 *
 * `library` is the vendored sm-crypto-v2 (`SmCryptoV2`); `pinned` holds the choices sm2.py fixes: the signer's
 * user ID in Z_A, the curve order n (hex), the sizes of a public key and of a signature. The point, the message and
 * the signature (raw r || s) are bytes. False, never an exception, for a key or a signature of the wrong shape, r
 * or s outside [1, n-1] (the library would take s + n for s: a second spelling of one signature), or a point off
 * the curve (the library refuses to read it).
 */
function sm2SignatureHolds(library, pinned, point, message, signature) {
  if (point.length !== pinned.publicKeyBytes || point[0] !== 0x04 || signature.length !== pinned.signatureBytes) {
    return false;
  }
  const hexOf = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  const n = BigInt("0x" + pinned.n);
  const r = BigInt("0x" + hexOf(signature.subarray(0, 32))), s = BigInt("0x" + hexOf(signature.subarray(32)));
  if (!(r > 0n && r < n && s > 0n && s < n)) { return false; }
  try {
    return library.sm2.doVerifySignature(message, hexOf(signature), hexOf(point),
                                         { hash: true, der: false, userId: pinned.userId }) === true;
  } catch (error) {
    return false;
  }
}
