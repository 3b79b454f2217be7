/* SM2 with SM3 (GB/T 32918.2, GB/T 35276), as backend/core/crypto/sm2.py fixes every choice: the signer's user ID
 * (CONSTANTS.sm2.userId, written in from sm2.USER_ID) in Z_A, the public key as the 65-byte uncompressed point
 * 0x04 || x || y, the signature as raw r || s (32 bytes each). The arithmetic is the vendored sm-crypto-v2's
 * (vendor/README.md); what it leaves unchecked is checked first, as the server checks it: the key's shape here,
 * and a signature's shape and 0 < r, s < n in sm2_rule.js, which the console shares.
 */

function bigint(bytes) {
  return BigInt("0x" + (hex(bytes) || "0"));
}

/* Whether the 65 bytes are a point of the SM2 curve (the library refuses any other as it reads it). */
function sm2OnCurve(raw) {
  try {
    return SmCryptoV2.sm2.verifyPublicKey(hex(raw)) === true;
  } catch (error) {
    return false;
  }
}

/* The bytes of an SM2 device key, or Refused in the words of sync/jws.py `load_device_key`. */
function sm2DeviceKey(raw) {
  const size = CONSTANTS.sm2.publicKeyBytes;
  if (raw.length !== size) {
    throw new Refused(T("应是 " + size + " 字节的未压缩 SM2 点（0x04 || x || y），而不是 " + raw.length + " 字节",
                        "must be the " + size + "-byte uncompressed SM2 point (0x04 || x || y), not " + raw.length +
                        " bytes"));
  }
  if (raw[0] !== 0x04) {
    throw new Refused(T("应是未压缩的 SM2 点：其第一个字节是 0x04", "must be the uncompressed SM2 point: its first byte is 0x04"));
  }
  if (!sm2OnCurve(raw)) {
    throw new Refused(T("不是 SM2 曲线上的点", "is not a point on the SM2 curve"));
  }
  return raw;
}

/* The bytes of an SM2 custody key, or Refused in the words of backend/core/crypto/sm2.py `check_public_key`. */
function sm2CustodyKey(raw) {
  if (raw.length !== CONSTANTS.sm2.publicKeyBytes || raw[0] !== 0x04) {
    throw new Refused(T("SM2 公钥是未压缩的点，" + CONSTANTS.sm2.publicKeyBytes + " 字节，以 0x04 开头",
                        "an SM2 public key is the uncompressed point, " + CONSTANTS.sm2.publicKeyBytes +
                        " bytes starting 0x04"));
  }
  if (!sm2OnCurve(raw)) {
    throw new Refused(T("该 SM2 公钥不是曲线上的点", "the SM2 public key is not a point on the curve"));
  }
  return raw;
}

/* Whether `signature` (raw r || s) signs `message` (bytes) under the SM2 key `raw` and the pinned user ID: the
 * rule of sm2_rule.js, which the console's check shares. */
function sm2Verify(raw, message, signature) {
  return sm2SignatureHolds(SmCryptoV2, CONSTANTS.sm2, raw, message, signature);
}

/* An SM2 key's id, as the custody log names it: the first 16 hex digits of SM3 of its 65 bytes. */
function sm2KeyId(raw) {
  return hex(sm3(raw)).slice(0, 16);
}
