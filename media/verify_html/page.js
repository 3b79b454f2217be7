/* The page: pick a package (and, to prove who issued it, enter the custody key, and the SM2 one for a package with
 * an SM tree), see the verdict, each problem in
 * Chinese with English below it, the notes and a summary. `#verdict` carries data-verdict="ok" or "fail" once
 * the checks are done (none while they run).
 */

const $ = (id) => document.getElementById(id);

function bilingual(tag, text, className) {
  const element = document.createElement(tag);
  if (className) { element.className = className; }
  const zh = document.createElement("span");
  zh.lang = "zh-CN";
  zh.className = "zh";
  zh.textContent = text.zh;
  const en = document.createElement("span");
  en.lang = "en";
  en.className = "en";
  en.textContent = text.en;
  element.append(zh, en);
  return element;
}

function showList(id, texts) {
  const list = $(id);
  list.textContent = "";
  texts.forEach((text) => list.appendChild(bilingual("li", text)));
  list.closest("section").hidden = texts.length === 0;
}

function fact(term, value) {
  const dl = $("summary");
  dl.appendChild(bilingual("dt", term));
  const dd = document.createElement("dd");
  dd.textContent = value;
  dl.appendChild(dd);
}

function showSummary(report, file) {
  const dl = $("summary");
  dl.textContent = "";
  const m = report.manifest;
  fact(T("文件", "File"), file.name + " (" + file.size.toLocaleString("en") + " B)");
  if (m) {
    const pkg = isDict(m.package) ? m.package : {};
    const theCase = isDict(m.case) ? m.case : {};
    const institution = isDict(theCase.institution) ? theCase.institution.name : null;
    fact(T("案件", "Case"), pystr(theCase.id) + (institution ? " · " + pystr(institution) : ""));
    fact(T("证据包", "Package"), pystr(pkg.id) + " · " + pystr(pkg.created_at) + " · " + pystr(pkg.created_by_name));
    fact(T("用途", "Purpose"), pystr(pkg.purpose));
    fact(T("范围", "Scope"), pkg.items === null || pkg.items === undefined ? "整案 whole case"
      : "部分证据 chosen items: " + (Array.isArray(pkg.items) ? pkg.items.length : "?"));
    const head = isDict(m.custody) && isDict(m.custody.tree_head) ? m.custody.tree_head : {};
    fact(T("监管树头", "Custody tree head"), "size " + pystr(head.tree_size) + " · " + pystr(head.timestamp) +
         (report.timestamped ? " · RFC 3161 " + report.timestamped : ""));
    const sm = isDict(m.custody) && isDict(m.custody.sm) && isDict(m.custody.sm.tree_head) ? m.custody.sm.tree_head : null;
    if (sm) {
      fact(T("SM 树头（SM3、SM2）", "SM tree head (SM3, SM2)"), "size " + pystr(sm.tree_size) + " · " + pystr(sm.timestamp));
    }
  }
  const checked = report.summary();
  fact(T("已核验", "Checked"), checked.zh + " / " + checked.en);
  if (report.keySource === "entered") {
    fact(T("所用公钥", "Key used"), "本页输入的监管公钥 the custody key entered on this page (key_id " + report.keyId + ")");
  } else if (report.keySource === "package") {
    fact(T("所用公钥", "Key used"), "证据包自带的公钥 the key inside the package (key_id " + report.keyId + "): " +
         "只证明自身一致 proves self-consistency only");
  }
  if (report.smKeySource === "entered") {
    fact(T("所用 SM2 公钥", "SM2 key used"), "本页输入的 SM2 监管公钥 the SM2 custody key entered on this page (key_id " +
         report.smKeyId + ")");
  } else if (report.smKeySource === "package" && report.smKeyId) {
    fact(T("所用 SM2 公钥", "SM2 key used"), "证据包自带的 SM2 公钥 the SM2 key inside the package (key_id " + report.smKeyId +
         "): 只证明自身一致 proves self-consistency only");
  }
}

function showVerdict(report) {
  const verdict = $("verdict");
  verdict.textContent = "";
  const n = report.problems.length;
  const text = report.ok
    ? (report.keySource === "entered"
      ? T("核验通过：未发现问题", "Verified: no problem found")
      : T("核验通过：未发现问题（但只证明证据包自身一致；请输入监管公钥以证明它出自服务器）",
          "Verified: no problem found (self-consistency only: enter the custody key to prove the server issued it)"))
    : T("核验未通过：发现 " + n + " 个问题", "NOT verified: " + n + " problem(s) found");
  verdict.appendChild(bilingual("p", text));
  verdict.dataset.key = report.keySource || "";
  verdict.dataset.problems = String(n);
  verdict.dataset.verdict = report.ok ? "ok" : "fail";
  verdict.hidden = false;
}

function progress(name, done, total) {
  const percent = total ? Math.floor((done / total) * 100) : 100;
  $("status").textContent = "正在读取 Reading " + name + " (" + percent + "%)";
}

async function browserProblem() {
  if (!window.isSecureContext || !window.crypto || !crypto.subtle || typeof DecompressionStream !== "function") {
    return T("此浏览器无法运行核验（缺少 Web Crypto 或 DecompressionStream）：请用新版 Chrome、Edge、Firefox 或 Safari 打开",
             "this browser cannot run the checks (no Web Crypto or DecompressionStream): open the page in a current " +
             "Chrome, Edge, Firefox or Safari");
  }
  if (!(await ed25519Supported())) {
    return T("此浏览器的 Web Crypto 不支持 Ed25519，无法核验签名：请用 Chrome 137、Firefox 129、Safari 17 或更新版本",
             "this browser's Web Crypto has no Ed25519, so no signature can be checked: use Chrome 137, Firefox 129, " +
             "Safari 17 or later");
  }
  return null;
}

let running = false;

async function run() {
  const file = $("package").files[0];
  if (!file || running) { return; }
  running = true;
  $("again").disabled = true;
  const verdict = $("verdict");
  delete verdict.dataset.verdict;
  verdict.hidden = true;
  $("status").textContent = "正在核验 Checking " + file.name + " …";
  let report = new Report();
  try {
    const unable = await browserProblem();
    if (unable) {
      report.problem(unable);
    } else {
      const limit = document.documentElement.dataset.streamAbove;
      report = await verifyPackage(file, { key: $("key").value, smKey: $("sm-key").value }, progress,
                                   limit ? Number(limit) : undefined);
    }
  } catch (error) {
    report.problem(T("核验中断：" + (error && error.message ? error.message : String(error)),
                     "the verification stopped: " + (error && error.message ? error.message : String(error))));
  }
  showList("problems", report.problems);
  showList("notes", report.notes);
  showSummary(report, file);
  $("summary").closest("section").hidden = false;
  showVerdict(report);
  $("status").textContent = "";
  $("again").disabled = false;
  running = false;
}

$("package").addEventListener("change", run);
$("again").addEventListener("click", run);
