/* The records of a package (media/package_verify/records.py): every record's signature with its device's key, in
 * its device's suite (`alg`: EdDSA for an Ed25519 device, also when absent as in packages made before SM2 devices;
 * SM2SM3 for an SM2 device), every device's hash chain (SHA-256, or SM3, of each JWS), and where the custody log
 * witnessed each chain end (its device_head leaf).
 */

const ZERO_HASH = "0".repeat(64);
const ASCII = /^[\x00-\x7f]*$/;

/* The suite (a key of CONSTANTS.suites) a JWS header's or a device's `alg` names, or null: an explicit list. */
function suiteForAlg(alg) {
  if (typeof alg !== "string") { return null; }
  const found = Object.entries(CONSTANTS.suites).find(([, suite]) => suite.algs.includes(alg));
  return found ? found[0] : null;
}

/* The suite a manifest's device names by its `alg`; Ed25519's when it names none; null for an unknown alg. */
function deviceSuite(device) {
  const alg = isDict(device) ? get(device, "alg") : null;
  return alg === null ? "intl" : suiteForAlg(alg);
}

/* A device's key in its suite: {suite, ed25519} (a Web Crypto key) or {suite, raw} (an SM2 point). */
async function deviceKey(device, suite) {
  const text = req(device, "public_key");
  if (suite === "intl") { return { suite: suite, ed25519: await ed25519Key(keyBytes(text)) }; }
  return { suite: suite, raw: sm2DeviceKey(b64d(text)) };
}

async function deviceKeys(devices, report) {
  const keys = new Map();
  const entries = items(devices);
  report.devices = entries.length;
  for (const [deviceId, device] of entries) {
    const suite = deviceSuite(device);
    if (suite === null) {
      const alg = pyrepr(get(device, "alg")), algs = CONSTANTS.recordAlgs.join(", ");
      report.problem(T("设备 " + deviceId + "：其 alg " + alg + " 不是协议规定的算法（" + algs + "），因此它的记录都无法核验",
                       "device " + deviceId + ": its alg " + alg + " is not one the protocol defines (" + algs + "), " +
                       "so none of its records can be checked"));
      continue;
    }
    try {
      keys.set(deviceId, await deviceKey(device, suite));
    } catch (error) {
      if (!(error instanceof Refused)) { throw error; }
      const name = CONSTANTS.suites[suite].signature;
      report.problem(T("设备 " + deviceId + "：其公钥不是有效的 " + name + " 公钥（" + error.why.zh + "）",
                       "device " + deviceId + ": its public key is not a valid " + name + " key (" + error.why.en + ")"));
    }
  }
  return keys;
}

/* [header, payload] of a compact JWS whose signature holds with its device's key, in its device's suite; Refused
 * when it is not spelled as the protocol allows for that device (its signature then unchecked); null when the
 * signature does not hold. */
async function verifyJws(text, key) {
  if (typeof text !== "string" || !ASCII.test(text)) {
    throw new Refused(T("紧凑 JWS 应是 ASCII 字符串", "a compact JWS is an ASCII string"));
  }
  const parts = text.split(".");
  if (parts.length !== 3 || !parts.every((p) => p)) {
    throw new Refused(T("不是紧凑 JWS（header.payload.signature）", "not a compact JWS (header.payload.signature)"));
  }
  const names = [T("头部", "header"), T("载荷", "payload"), T("签名", "signature")];
  const raw = parts.map((part, i) => {
    try {
      return b64d(part);
    } catch (error) {
      if (!(error instanceof Refused)) { throw error; }
      throw new Refused(T("其" + names[i].zh + error.why.zh, "its " + names[i].en + " is " + error.why.en));
    }
  });
  const header = jsonObject(raw[0], names[0]), payload = jsonObject(raw[1], names[1]);
  const suite = CONSTANTS.suites[key.suite];
  const alg = get(header, "alg");
  if (typeof alg !== "string" || !suite.algs.includes(alg)) {
    throw new Refused(T("头部 alg 是 " + pyrepr(alg) + "，不是 " + suite.algs.join(" 或 "),
                        "header alg is " + pyrepr(alg) + ", not " + suite.algs.join(" or ")));
  }
  if (raw[2].length !== 64) {
    throw new Refused(T("其签名是 " + raw[2].length + " 字节，而 " + suite.signature + " 签名是 64 字节",
                        "its signature is " + raw[2].length + " bytes, not the 64 of " + suite.signature));
  }
  const signingInput = utf8(parts[0] + "." + parts[1]);
  const holds = key.ed25519 ? await ed25519Verify(key.ed25519, raw[2], signingInput)
                            : sm2Verify(key.raw, signingInput, raw[2]);
  return holds ? [header, payload] : null;
}

function asciiReplaced(text) {
  return utf8(Array.from(text, (ch) => (ch.codePointAt(0) < 0x80 ? ch : "?")).join(""));
}

/* Check each record and each device chain; answer what the records whose signatures hold say, by type and
 * subject (Map type -> Map subject -> {at, device, body, type}; ALL -> Map "record <device>#<seq>" -> same). */
async function checkRecords(records, devices, keys, tree, report) {
  const list = iter(records);
  report.records = list.length;
  const chains = new Map(), listed = new Map();
  for (const deviceId of iter(devices)) { chains.set(deviceId, new Map()); listed.set(deviceId, new Map()); }
  const signed = new Map();
  const remember = (type, subject, said) => {
    if (!signed.has(type)) { signed.set(type, new Map()); }
    signed.get(type).set(subject, said);
  };
  for (const rec of list) {
    const deviceId = req(rec, "device"), seq = req(rec, "seq"), text = req(rec, "jws");
    const where = T("记录 " + pystr(deviceId) + "#" + pystr(seq), "record " + pystr(deviceId) + "#" + pystr(seq));
    if (typeof text !== "string") {
      throw new Malformed("AttributeError", "'" + pytype(text) + "' object has no attribute 'encode'");
    }
    const suite = deviceSuite(has(devices, deviceId) ? devices[deviceId] : null) || "intl";
    const digest = hex(await suiteDigest(suite, asciiReplaced(text)));  // sync/jws.py `record_hash`
    if (digest !== req(rec, "hash")) {
      report.problem(T(where.zh + "：其 JWS 的哈希值与所列哈希值不符（记录被改动过）",
                       where.en + ": its JWS does not hash to the listed hash (the record was altered)"));
    }
    if (!has(devices, deviceId)) {
      report.problem(T(where.zh + "：其设备不在清单中，因此无法核验",
                       where.en + ": its device is not in the manifest, so it cannot be checked"));
      continue;
    }
    let prev = null;
    if (keys.has(deviceId)) {
      let verified;
      try {
        verified = await verifyJws(text, keys.get(deviceId));
      } catch (error) {
        if (!(error instanceof Refused)) { throw error; }
        report.problem(T(where.zh + "：已拒绝，" + error.why.zh + "：它不是协议所规定的记录 JWS，因此未核验其签名",
                         where.en + ": refused, " + error.why.en + ": it is not a record JWS as the protocol spells " +
                         "one, so its signature was not checked"));
        verified = undefined;
      }
      if (verified === null) {
        report.problem(T(where.zh + "：签名核验失败（签名无效）：记录已不是设备签名时的样子",
                         where.en + ": signature check failed (bad signature): the record is not as the device " +
                         "signed it"));
      } else if (verified) {
        const [header, payload] = verified;
        prev = get(payload, "prev");
        if (get(header, "kid") !== deviceId) {
          report.problem(T(where.zh + "：签名所用 kid 是 " + pyrepr(get(header, "kid")) + "，不是其设备",
                           where.en + ": signed with kid " + pyrepr(get(header, "kid")) + ", not its device"));
        }
        if (!pyEq(get(payload, "seq"), seq)) {
          report.problem(T(where.zh + "：其签名中的 seq 是 " + pystr(get(payload, "seq")),
                           where.en + ": its signed seq is " + pystr(get(payload, "seq"))));
        }
        const type = get(payload, "type");
        const subject = typeof type === "string" && has(CONSTANTS.subjects, type) ? CONSTANTS.subjects[type] : null;
        const body = get(payload, "body");
        if (isDict(body)) {
          const said = { at: get(payload, "at"), device: deviceId, body: body, type: type, op: get(payload, "op"),
                         where: where };
          remember("*", where.en, said);
          if (subject) { remember(type, pystr(get(body, subject)), said); }
        }
      }
    }
    if (chains.get(deviceId).has(seq)) {
      report.problem(T(where.zh + "：被列出两次", where.en + ": listed twice"));
    }
    chains.get(deviceId).set(seq, [digest, prev]);
    listed.get(deviceId).set(seq, req(rec, "hash"));
  }
  for (const [deviceId, device] of items(devices)) {
    checkChain(deviceId, device, chains.get(deviceId), report);
    await checkDeviceHead(deviceId, device, listed.get(deviceId), tree, report);
  }
  return signed;
}

function others(device) {
  const out = new Map();
  for (const o of iter(req(device, "other_records"))) { out.set(req(o, "seq"), req(o, "hash")); }
  return out;
}

function checkChain(deviceId, device, included, report) {
  const first = req(device, "first_seq"), last = req(device, "last_seq");
  const other = others(device);
  for (const bound of [first, last]) {
    if (!isInt(bound)) { throw new Malformed("TypeError", "'" + pytype(bound) + "' object cannot be interpreted as an integer"); }
  }
  const gaps = new Set();
  for (const gap of iter(get(device, "gaps", []))) {
    const [a, b] = iter(gap);
    for (let s = a; s <= b; s++) { gaps.add(s); }
  }
  const where = T("设备 " + deviceId, "device " + deviceId);
  if (included.size === 0) {
    report.problem(T(where.zh + "：它的记录一条也不在证据包中", where.en + ": none of its records is in the package"));
    return;
  }
  for (const seq of pysorted(new Set([...included.keys(), ...other.keys()]))) {
    if (!(first <= seq && seq <= last)) {
      report.problem(T(where.zh + "：seq " + pystr(seq) + " 在所列范围 " + pystr(first) + ".." + pystr(last) + " 之外",
                       where.en + ": seq " + pystr(seq) + " is outside its listed range " + pystr(first) + ".." +
                       pystr(last)));
    }
  }
  for (const seq of pysorted([...included.keys()].filter((s) => other.has(s)))) {
    report.problem(T(where.zh + "：seq " + pystr(seq) + " 既被收入又被列为其他记录",
                     where.en + ": seq " + pystr(seq) + " is both included and listed as another record"));
  }
  for (let seq = first; seq <= last; seq++) {
    if (!included.has(seq) && !other.has(seq) && !gaps.has(seq)) {
      report.problem(T(where.zh + "：记录链中缺少 seq " + seq + " 的记录（既未收入，也未以哈希值列出：有记录被删除）",
                       where.en + ": record seq " + seq + " is missing from the chain (neither included nor listed " +
                       "by hash: a record was removed)"));
    }
  }
  for (const seq of pysorted(included.keys())) {
    const prev = included.get(seq)[1];
    if (prev === null) { continue; }  // its signature failed: already reported
    let expected;
    if (seq === 1) { expected = ZERO_HASH; }
    else if (included.has(seq - 1)) { expected = included.get(seq - 1)[0]; }
    else if (other.has(seq - 1)) { expected = other.get(seq - 1); }
    else { continue; }  // the first included record, or right after a released gap
    if (!pyEq(prev, expected)) {
      report.problem(T(where.zh + "：seq " + seq + " 的记录没有接上 seq " + (seq - 1) + "（其 prev 不是那条记录的哈希值：记录链断了）",
                       where.en + ": record seq " + seq + " does not link to seq " + (seq - 1) + " (its prev is not " +
                       "that record's hash: the chain is broken)"));
    }
  }
}

/* The chain runs to where the custody log witnessed it end (a device_head leaf, proven). */
async function checkDeviceHead(deviceId, device, included, tree, report) {
  const where = T("设备 " + deviceId, "device " + deviceId);
  const head = get(device, "head");
  if (!isDict(head)) {
    report.problem(T(where.zh + "：没有监管叶子见证其记录链的终点，因此看不出链是否被截断",
                     where.en + ": no custody leaf witnesses where its chain ends, so a cut in it could not be seen"));
    return;
  }
  let leaf;
  try {
    const text = req(head, "leaf");
    if (typeof text !== "string") {
      throw new Refused(T("'" + pytype(text) + "' 对象没有 'encode' 属性",
                          "'" + pytype(text) + "' object has no attribute 'encode'"));
    }
    leaf = jsonObject(utf8(text), T("device_head 叶子", "device_head leaf"));
  } catch (error) {
    if (!(error instanceof Refused)) { throw error; }
    report.problem(T(where.zh + "：无法读取其 device_head 叶子（" + error.why.zh + "）",
                     where.en + ": its device_head leaf cannot be read (" + error.why.en + ")"));
    return;
  }
  if (get(leaf, "action") !== "device_head" || get(leaf, "device") !== deviceId) {
    report.problem(T(where.zh + "：其终点叶子不是本设备的 device_head 叶子",
                     where.en + ": its head leaf is not a device_head leaf of this device"));
    return;
  }
  if (tree === null || !(await inclusionHolds(head, T(where.zh + "：终点", where.en + ": head"), leaf, tree, report))) {
    return;
  }
  const seq = get(leaf, "seq"), recordHash = get(leaf, "record_hash");
  if (!pyEq(req(device, "last_seq"), seq)) {
    report.problem(T(where.zh + "：其记录链列到 seq " + pystr(device.last_seq) + "，而监管日志见证它止于 seq " + pystr(seq) +
                     "：链尾的记录被截掉，或在其后添加了记录",
                     where.en + ": its chain is listed to seq " + pystr(device.last_seq) + ", but the custody log " +
                     "witnessed it end at seq " + pystr(seq) + ": records were cut from the end or added after it"));
    return;
  }
  const other = others(device);
  const found = included.has(seq) ? included.get(seq) : (other.has(seq) ? other.get(seq) : null);
  if (!pyEq(found, recordHash)) {
    report.problem(T(where.zh + "：seq " + pystr(seq) + " 处的记录不是监管日志见证为其终点的那一条（是另一条，或者没有）",
                     where.en + ": the record at seq " + pystr(seq) + " is not the one the custody log witnessed as " +
                     "its head (another record, or none)"));
  }
}
