/* Verify an evidence item's custody log in this browser, trusting nothing the server concludes.
 *
 * The server supplies only data: each custody event's leaf (the exact canonical JSON text that was hashed),
 * an RFC 6962 inclusion proof per leaf, the signed tree head and the public key. This script recomputes
 * with the browser's own Web Crypto:
 *   leaf hash  = SHA-256(0x00 || leaf)                      (RFC 6962 §2.1)
 *   node hash  = SHA-256(0x01 || left || right)
 *   root       = the inclusion path (RFC 9162 §2.1.3.2), compared with the head's root_hash
 *   signature  = Ed25519 over the RFC 8785 canonical JSON of {"tree_size", "root_hash", "timestamp"}
 * and checks that each leaf names this evidence item. A changed leaf, proof, root or head fails.
 *
 * Where the server keeps the SM tree too (FIELDCASE_CUSTODY_SUITES=intl,sm; the section then carries `data-sm`),
 * the same leaves are checked in it beside, with the vendored sm-crypto-v2 the page loads (Web Crypto has neither
 * SM3 nor SM2): leaf SM3(0x00 || leaf), node SM3(0x01 || left || right), the SM head's SM2 signature (SM3, the
 * user ID in `data-sm`, raw r || s with 0 < r, s < n) over the same canonical JSON, its key id the first 16 hex
 * digits of SM3 of the 65-byte point.
 */
(function () {
  "use strict";

  var section = document.getElementById("verify");
  if (!section) { return; }
  var button = document.getElementById("verify-button");
  var summary = document.getElementById("verify-summary");
  var table = document.getElementById("verify-results");
  var messages = JSON.parse(section.dataset.messages);

  function fill(text, values) {
    return text.replace(/\{(\w+)\}/g, function (all, name) {
      return Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : all;
    });
  }

  function hex(bytes) {
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function unhex(text) {
    if (typeof text !== "string" || !/^([0-9a-f]{2})*$/.test(text)) { throw new Error("not lower-case hex: " + text); }
    var out = new Uint8Array(text.length / 2);
    for (var i = 0; i < out.length; i++) { out[i] = parseInt(text.substr(i * 2, 2), 16); }
    return out;
  }

  function unb64url(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var raw = atob(b64);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { out[i] = raw.charCodeAt(i); }
    return out;
  }

  function concat(parts) {
    var length = parts.reduce(function (n, p) { return n + p.length; }, 0);
    var out = new Uint8Array(length);
    var at = 0;
    parts.forEach(function (p) { out.set(p, at); at += p.length; });
    return out;
  }

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  /* The hash a tree is made of (RFC 6962 §2.1): SHA-256 for the intl tree; SM3 for the SM tree (below). */
  function rfc6962(digest) {
    return {
      leaf: function (text) { return digest(concat([new Uint8Array([0]), new TextEncoder().encode(text)])); },
      node: function (left, right) { return digest(concat([new Uint8Array([1]), left, right])); },
    };
  }

  var SHA256_TREE = rfc6962(sha256);

  /* RFC 9162 §2.1.3.2, with arithmetic that stays exact beyond 2^31 leaves. */
  async function rootFromPath(tree, index, size, hash, proof) {
    if (index >= size) { return null; }
    var fn = index, sn = size - 1, r = hash;
    for (var i = 0; i < proof.length; i++) {
      if (sn === 0) { return null; }
      if (fn % 2 === 1 || fn === sn) {
        r = await tree.node(proof[i], r);
        if (fn % 2 === 0) {
          while (fn !== 0 && fn % 2 === 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
        }
      } else {
        r = await tree.node(r, proof[i]);
      }
      fn = Math.floor(fn / 2);
      sn = Math.floor(sn / 2);
    }
    return sn === 0 ? r : null;
  }

  /* RFC 8785 for what a tree head holds (strings and integers): keys sorted, no spaces. */
  function canonical(object) {
    return "{" + Object.keys(object).sort().map(function (key) {
      return JSON.stringify(key) + ":" + JSON.stringify(object[key]);
    }).join(",") + "}";
  }

  async function fetchJSON(url) {
    var response = await fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } });
    var body = await response.json();
    if (!response.ok) { throw new Error(url.split("?")[0] + ": " + response.status + " " + (body.message || "")); }
    return body;
  }

  /* true, false, or null when this browser's Web Crypto has no Ed25519. */
  async function checkSignature(head, key) {
    var publicKey;
    try {
      publicKey = await crypto.subtle.importKey("raw", unb64url(key.public_key), { name: "Ed25519" }, false,
                                                ["verify"]);
    } catch (error) {
      if (error && (error.name === "NotSupportedError" || error.name === "TypeError")) { return null; }
      throw error;
    }
    var payload = canonical({ tree_size: head.tree_size, root_hash: head.root_hash, timestamp: head.timestamp });
    return crypto.subtle.verify({ name: "Ed25519" }, publicKey, unb64url(head.signature),
                                new TextEncoder().encode(payload));
  }

  /* The SM tree's constants and words, or null where the server keeps none (no `data-sm`). */
  var SM = section.dataset.sm ? JSON.parse(section.dataset.sm) : null;
  var smMessages = SM ? JSON.parse(section.dataset.smMessages) : null;

  function sm3(bytes) {
    return unhex(window.SmCryptoV2.sm3(bytes));
  }

  var SM3_TREE = rfc6962(async function (bytes) { return sm3(bytes); });

  /* Whether the SM head's signature holds under the 65-byte point: verify.html's own check (sm2-rule.js, the page
   * loads it with the library), as backend/core/crypto/sm2.py makes it. */
  function checkSmSignature(head, point) {
    var signature;
    try {
      signature = unb64url(head.signature);
    } catch (error) {
      return false;  // not base64url
    }
    var payload = canonical({ tree_size: head.tree_size, root_hash: head.root_hash, timestamp: head.timestamp });
    return window.sm2SignatureHolds(window.SmCryptoV2, SM, point, new TextEncoder().encode(payload), signature);
  }

  /* The SM tree's head and key, or why they cannot be had (the server's words: not built yet, ...). */
  async function smHeadAndKey() {
    if (!window.SmCryptoV2 || !window.sm2SignatureHolds) { return { why: smMessages.no_library }; }
    try {
      return { head: await fetchJSON(section.dataset.smHeadUrl), key: await fetchJSON(section.dataset.smKeyUrl) };
    } catch (error) {
      return { why: error && error.message ? error.message : String(error) };
    }
  }

  /* Why this event's leaf is not in `head`'s tree, or "" when its inclusion proof leads to the head's root. */
  async function included(tree, proofUrl, event, hash, head) {
    if (event.leaf_index >= head.tree_size) { return messages.after_head; }
    var url = new URL(proofUrl, window.location.href);
    url.searchParams.set("leaf_index", event.leaf_index);
    url.searchParams.set("tree_size", head.tree_size);
    var proof = await fetchJSON(url.pathname + url.search);
    var computed = await rootFromPath(tree, event.leaf_index, head.tree_size, hash, proof.proof.map(unhex));
    return computed === null || hex(computed) !== head.root_hash ? messages.root : "";
  }

  function paragraph(text, className) {
    var p = document.createElement("p");
    p.textContent = text;
    if (className) { p.className = className; }
    summary.appendChild(p);
    return p;
  }

  function verdictText(reason) {
    return reason === "" ? messages.pass : messages.fail + ": " + reason;
  }

  /* One event: its index, action and leaf hash, then a result cell per tree (`reasons`: "" where it passes). */
  function row(cells, reasons) {
    var tr = document.createElement("tr");
    cells.forEach(function (cell, i) {
      var td = document.createElement("td");
      if (i === 2) {
        var code = document.createElement("code");
        code.textContent = cell;
        td.appendChild(code);
      } else {
        td.textContent = cell;
      }
      tr.appendChild(td);
    });
    Object.keys(reasons).forEach(function (suite) {
      var td = document.createElement("td");
      td.textContent = verdictText(reasons[suite]);
      td.className = reasons[suite] === "" ? "pass" : "fail";
      tr.appendChild(td);
      tr.dataset[suite] = td.className;
    });
    var passed = Object.keys(reasons).every(function (suite) { return reasons[suite] === ""; });
    tr.dataset.verdict = passed ? "pass" : "fail";
    table.tBodies[0].appendChild(tr);
  }

  /* The SM tree's verdict paragraphs; whether its head's SM2 signature holds (true, or false where unchecked). */
  function smSummary(sm, smFailed) {
    var signatureOk = false;
    if (sm.head) {
      paragraph(fill(smMessages.head, { size: sm.head.tree_size, root: sm.head.root_hash.slice(0, 16) + "…",
                                         time: sm.head.timestamp, key: sm.head.key_id }));
      var point = unb64url(sm.key.public_key);
      var keyId = hex(sm3(point)).slice(0, 16);
      signatureOk = keyId === sm.head.key_id && checkSmSignature(sm.head, point);
      if (signatureOk) {
        paragraph(smMessages.sig_ok, "sm-sig-ok");
      } else {
        paragraph(smMessages.sig_bad + (keyId !== sm.head.key_id ? " (" + messages.key_mismatch + ")" : ""),
                  "sm-sig-bad");
      }
      summary.dataset.smSignature = signatureOk ? "valid" : "invalid";
    } else {
      paragraph(fill(smMessages.unavailable, { message: sm.why }), "sm-unavailable");
      summary.dataset.smSignature = "unchecked";
    }
    if (smFailed) { paragraph(fill(smMessages.some_fail, { n: smFailed }), "sm-some-fail"); }
    summary.dataset.sm = signatureOk && smFailed === 0 ? "pass" : "fail";
    return signatureOk;
  }

  async function verify() {
    summary.textContent = "";
    summary.dataset.verdict = "";
    ["intl", "sm", "signature", "smSignature"].forEach(function (name) { delete summary.dataset[name]; });
    table.tBodies[0].textContent = "";
    table.hidden = true;
    if (!window.isSecureContext || !window.crypto || !crypto.subtle) {
      summary.dataset.verdict = "fail";
      paragraph(messages.no_crypto);
      return;
    }
    paragraph(messages.running);
    var evidenceId = section.dataset.evidence;
    var events = (await fetchJSON(section.dataset.eventsUrl)).events;
    var head = await fetchJSON(section.dataset.headUrl);  // after the events: a head that covers them all
    var key = await fetchJSON(section.dataset.keyUrl);
    var sm = SM ? await smHeadAndKey() : null;  // issued with the intl head, at its size or (leaves since) past it
    var failed = 0, smFailed = 0, rowsFailed = 0;
    for (var i = 0; i < events.length; i++) {
      var event = events[i];
      var hash = await SHA256_TREE.leaf(event.leaf);
      var reason = "";
      var leaf = null;
      try { leaf = JSON.parse(event.leaf); } catch (error) { reason = messages.not_json; }
      if (!reason && (leaf === null || leaf.evidence_id !== evidenceId)) { reason = messages.other_item; }
      var reasons = { intl: reason || await included(SHA256_TREE, section.dataset.proofUrl, event, hash, head) };
      if (sm) {
        try {
          reasons.sm = reason || (sm.head ? await included(SM3_TREE, section.dataset.smProofUrl, event,
                                                           await SM3_TREE.leaf(event.leaf), sm.head) : sm.why);
        } catch (error) {
          reasons.sm = error && error.message ? error.message : String(error);
        }
        if (reasons.sm !== "") { smFailed += 1; }
      }
      if (reasons.intl !== "") { failed += 1; }
      if (reasons.intl !== "" || (sm && reasons.sm !== "")) { rowsFailed += 1; }
      var action = leaf && leaf.action ? (messages.actions[leaf.action] || leaf.action) : "?";
      row([String(event.leaf_index), action, hex(hash).slice(0, 16) + "…"], reasons);
    }
    table.hidden = false;
    summary.textContent = "";
    var keyId = hex(await sha256(unb64url(key.public_key))).slice(0, 16);
    paragraph(fill(messages.head, { size: head.tree_size, root: head.root_hash.slice(0, 16) + "…",
                                    time: head.timestamp, key: head.key_id }));
    var signature = await checkSignature(head, key);
    var signatureOk = signature === true && keyId === head.key_id;
    if (signature === null) {
      paragraph(messages.sig_unsupported, "sig-unsupported");
    } else if (signatureOk) {
      paragraph(messages.sig_ok, "sig-ok");
    } else {
      paragraph(messages.sig_bad + (keyId !== head.key_id ? " (" + messages.key_mismatch + ")" : ""), "sig-bad");
    }
    var intlPassed = failed === 0 && events.length > 0 && signature !== false && (signature === null || signatureOk);
    summary.dataset.intl = intlPassed ? "pass" : "fail";
    summary.dataset.signature = signature === null ? "unsupported" : (signatureOk ? "valid" : "invalid");
    var smSignatureOk = sm ? smSummary(sm, smFailed) : true;
    var passed = intlPassed && (!sm || summary.dataset.sm === "pass");
    summary.dataset.verdict = passed ? "pass" : "fail";
    summary.insertBefore(document.createElement("p"), summary.firstChild).textContent =
      (passed ? messages.pass + ": " + fill(sm ? smMessages.all_pass : messages.all_pass, { n: events.length })
              : messages.fail + ": " + fill(messages.some_fail,
                                            { n: Math.max(rowsFailed, signatureOk && smSignatureOk ? 0 : 1) }));
  }

  button.addEventListener("click", function () {
    button.disabled = true;
    verify().catch(function (error) {
      summary.dataset.verdict = "fail";
      paragraph(fill(messages.error, { message: error && error.message ? error.message : String(error) }));
    }).finally(function () { button.disabled = false; });
  });
}());
