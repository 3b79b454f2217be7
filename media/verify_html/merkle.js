/* RFC 9162 §2.1.3.2 inclusion proofs, strict as media/custody/proofs.py: every hash 32 bytes, 0 <= index < size,
 * and exactly the number of hashes the RFC's PATH has for that leaf. Leaf hash SHA-256(0x00 || leaf), node hash
 * SHA-256(0x01 || left || right); in the SM custody tree (media/custody/merkle.py `SM3_TREE`) the same with SM3.
 * Sizes are BigInt inside, so trees past 2^31 leaves stay exact.
 */

function concatBytes(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

function leafHash(text) {
  return sha256(concatBytes([new Uint8Array([0]), utf8(text)]));
}

function nodeHash(left, right) {
  return sha256(concatBytes([new Uint8Array([1]), left, right]));
}

/* The hash a tree is made of: RFC 6962's over SHA-256 (the custody tree), or over SM3 (the SM custody tree). */
const SHA256_TREE = { leaf: leafHash, node: nodeHash };
const SM3_TREE = {
  leaf: async (text) => sm3(concatBytes([new Uint8Array([0]), utf8(text)])),
  node: async (left, right) => sm3(concatBytes([new Uint8Array([1]), left, right])),
};

function bitLength(n) {
  return n === 0n ? 0 : n.toString(2).length;
}

function bitCount(n) {
  return Array.from(n.toString(2)).filter((d) => d === "1").length;
}

/* How many hashes PATH(index, D[size]) has (0 <= index < size). */
function inclusionProofLength(index, size) {
  const inner = bitLength(index ^ (size - 1n));
  return inner + bitCount(index >> BigInt(inner));
}

function sameBytes(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/* Why the inclusion proof is refused (bilingual), or null when it holds. */
async function checkInclusion(hash, leafIndex, treeSize, proof, root, tree = SHA256_TREE) {
  if (!isInt(leafIndex) || leafIndex < 0 || !isInt(treeSize) || treeSize < 0) {
    return T("叶子序号和树的大小必须是非负整数", "the leaf index and the tree size must be non-negative integers");
  }
  const index = BigInt(leafIndex), size = BigInt(treeSize);
  if (index >= size) {
    return T("叶子序号 " + leafIndex + " 不在一棵 " + treeSize + " 个叶子的树中（leaf_index >= tree_size）",
             "leaf index " + leafIndex + " is not in a tree of " + treeSize + " leaves (leaf_index >= tree_size)");
  }
  const expected = inclusionProofLength(index, size);
  if (proof.length !== expected) {
    const has = hashesText(proof.length);
    return T("证明有 " + has.zh + "；" + treeSize + " 个叶子的树中的叶子 " + leafIndex + " 需要 " + expected + " 个",
             "the proof has " + has.en + "; leaf " + leafIndex + " of a tree of " + treeSize + " needs " + expected);
  }
  let fn = index, sn = size - 1n, r = hash;
  for (const p of proof) {
    if (fn & 1n || fn === sn) {
      r = await tree.node(p, r);
      if (!(fn & 1n)) {
        while (fn && !(fn & 1n)) { fn >>= 1n; sn >>= 1n; }
      }
    } else {
      r = await tree.node(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n || !sameBytes(r, root)) {
    return T("证明不能推出根哈希", "the proof does not lead to the root hash");
  }
  return null;
}
