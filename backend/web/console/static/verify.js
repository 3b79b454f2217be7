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

  function leafHash(text) {
    return sha256(concat([new Uint8Array([0]), new TextEncoder().encode(text)]));
  }

  function nodeHash(left, right) {
    return sha256(concat([new Uint8Array([1]), left, right]));
  }

  /* RFC 9162 §2.1.3.2, with arithmetic that stays exact beyond 2^31 leaves. */
  async function rootFromPath(index, size, hash, proof) {
    if (index >= size) { return null; }
    var fn = index, sn = size - 1, r = hash;
    for (var i = 0; i < proof.length; i++) {
      if (sn === 0) { return null; }
      if (fn % 2 === 1 || fn === sn) {
        r = await nodeHash(proof[i], r);
        if (fn % 2 === 0) {
          while (fn !== 0 && fn % 2 === 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
        }
      } else {
        r = await nodeHash(r, proof[i]);
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

  function paragraph(text, className) {
    var p = document.createElement("p");
    p.textContent = text;
    if (className) { p.className = className; }
    summary.appendChild(p);
    return p;
  }

  function row(cells, verdict) {
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
      if (i === cells.length - 1) { td.className = verdict ? "pass" : "fail"; }
      tr.appendChild(td);
    });
    tr.dataset.verdict = verdict ? "pass" : "fail";
    table.tBodies[0].appendChild(tr);
  }

  async function verify() {
    summary.textContent = "";
    summary.dataset.verdict = "";
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
    var root = unhex(head.root_hash);
    var failed = 0;
    for (var i = 0; i < events.length; i++) {
      var event = events[i];
      var hash = await leafHash(event.leaf);
      var ok = true, reason = "";
      var leaf = null;
      try { leaf = JSON.parse(event.leaf); } catch (error) { ok = false; reason = messages.not_json; }
      if (ok && (leaf === null || leaf.evidence_id !== evidenceId)) { ok = false; reason = messages.other_item; }
      if (ok && event.leaf_index >= head.tree_size) { ok = false; reason = messages.after_head; }
      if (ok) {
        var proof = await fetchJSON(section.dataset.proofUrl + "?leaf_index=" + encodeURIComponent(event.leaf_index) +
                                    "&tree_size=" + encodeURIComponent(head.tree_size));
        var computed = await rootFromPath(event.leaf_index, head.tree_size, hash, proof.proof.map(unhex));
        if (computed === null || hex(computed) !== hex(root)) { ok = false; reason = messages.root; }
      }
      if (!ok) { failed += 1; }
      var action = leaf && leaf.action ? (messages.actions[leaf.action] || leaf.action) : "?";
      row([String(event.leaf_index), action, hex(hash).slice(0, 16) + "…",
           (ok ? messages.pass : messages.fail + (reason ? ": " + reason : ""))], ok);
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
    var passed = failed === 0 && events.length > 0 && signature !== false && (signature === null || signatureOk);
    summary.dataset.verdict = passed ? "pass" : "fail";
    summary.dataset.signature = signature === null ? "unsupported" : (signatureOk ? "valid" : "invalid");
    summary.insertBefore(document.createElement("p"), summary.firstChild).textContent =
      (passed ? messages.pass + ": " + fill(messages.all_pass, { n: events.length })
              : messages.fail + ": " + fill(messages.some_fail, { n: Math.max(failed, signatureOk ? 0 : 1) }));
  }

  button.addEventListener("click", function () {
    button.disabled = true;
    verify().catch(function (error) {
      summary.dataset.verdict = "fail";
      paragraph(fill(messages.error, { message: error && error.message ? error.message : String(error) }));
    }).finally(function () { button.disabled = false; });
  });
}());
