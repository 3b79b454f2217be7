/* Offline verification of an evidence package in the browser: the checks of media/package_verify/__init__.py, in
 * its order, from the picked ZIP alone plus (optionally) the custody keys the clerk enters: the Ed25519 one (as
 * `--public-key`) and, for a package with an SM tree, the SM2 one (as `--sm-public-key`). Nothing is sent
 * anywhere: the page has no network access at all (its Content-Security-Policy is default-src 'none').
 */

class Report {
  constructor() {
    this.problems = [];
    this.notes = [];
    this.records = 0;
    this.devices = 0;
    this.items = 0;
    this.files = 0;
    this.deleted = 0;
    this.events = 0;
    this.keySource = null;
    this.keyId = null;
    this.smKeySource = null;  // the SM tree's key: "entered", "package", or null (no SM tree, or none usable)
    this.smKeyId = null;
    this.smTreeSize = null;
    this.timestamped = null;
    this.manifest = null;
  }

  problem(text) {
    this.problems.push(text);
  }

  note(text) {
    this.notes.push(text);
  }

  get ok() {
    return this.problems.length === 0;
  }

  summary() {
    const deleted = this.deleted ? T("，其中 " + this.deleted + " 个已按保存期限删除", ", " + this.deleted + " deleted under retention")
                                 : T("", "");
    return T(this.devices + " 台设备的 " + this.records + " 条记录，" + this.items + " 个证据项（" + this.files + " 个文件" +
             deleted.zh + "），" + this.events + " 个监管事件",
             this.records + " records from " + this.devices + " devices, " + this.items + " evidence items (" +
             this.files + " files" + deleted.en + "), " + this.events + " custody events");
  }
}

/* `entered`: the keys the clerk typed, {key: the custody key, smKey: the SM2 custody key} (either empty). */
async function verifyPackage(file, entered, progress, streamAbove) {
  const report = new Report();
  let entries;
  try {
    entries = await readZip(file);
  } catch (error) {
    if (!(error instanceof NotAZip)) { throw error; }
    report.problem(T("不是可读的 ZIP 文件：" + error.message, "not a readable ZIP file: " + error.message));
    return report;
  }
  const members = new Members(file, entries, progress);
  if (streamAbove !== undefined) { members.streamAbove = streamAbove; }
  let manifest;
  try {
    manifest = JSON.parse(decodeUtf8(await members.read("manifest.json")));
  } catch (error) {
    if (error instanceof NoMember) {
      report.problem(T("证据包中缺少 manifest.json", "manifest.json is missing from the package"));
      return report;
    }
    if (error instanceof SyntaxError || error instanceof TypeError || error instanceof Damaged) {
      report.problem(T("无法读取 manifest.json：" + error.message, "manifest.json cannot be read: " + error.message));
      return report;
    }
    throw error;
  }
  if (!isDict(manifest) || manifest.format !== "fieldcase-evidence-package") {
    report.problem(T("manifest.json 不是 fieldcase 证据包清单", "manifest.json is not a fieldcase evidence package manifest"));
    return report;
  }
  report.manifest = manifest;
  try {
    await verifyManifest(members, manifest, entered, report);
  } catch (error) {
    if (!(error instanceof Malformed)) { throw error; }
    report.problem(T("清单格式有误（" + error.message + "）", "the manifest is malformed (" + error.message + ")"));
  }
  return report;
}

async function verifyManifest(members, manifest, entered, report) {
  members.withSm3 = has(req(manifest, "custody"), "sm");  // sealed in SM2 too: every member's SM3 in its one read
  const key = await custodyKey(manifest, entered.key, report);
  const keys = await deviceKeys(req(manifest, "devices"), report);
  const tree = headTree(req(req(manifest, "custody"), "tree_head"), report);
  const signed = await checkRecords(req(manifest, "records"), manifest.devices, keys, tree, report);
  await checkEvidence(members, manifest, signed, tree, report);
  checkMembership(manifest, signed, report);
  const corrected = await checkCorrections(manifest, signed, report);
  await checkFacts(manifest, signed, report, corrected);
  checkInstitution(manifest, signed, report, corrected);
  await checkCaseFacts(manifest, tree, report);
  await checkTreeHead(manifest, key, Boolean(entered.key), report);
  await checkSmTree(manifest, entered.smKey, report);
  await checkTimestamp(manifest, report);
  await checkIndex(members, manifest, key, report, entered.smKey);
}
