// Checks, in the browser, that an audit entry is in the node's signed log, trusting nothing the server computed:
//   1. leaf hash = SHA-256(0x00 || JCS(entry))                          (RFC 9162 §2.1.1 over RFC 8785)
//   2. fold the audit path from the leaf up to a root                   (RFC 9162 §2.1.3.2)
//   3. that root equals the signed tree head's root_hash
//   4. the tree head's detached JWS verifies with the node's Ed25519 key (typ rcc-tree-head+jws, alg EdDSA)
// WebCrypto does the hashing and the signature check. Hand-written; no library.
(function () {
  "use strict";

  var TREE_HEAD_TYP = "rcc-tree-head+jws";
  var encoder = new TextEncoder();

  // RFC 8785 canonical JSON for what audit entries hold: strings, numbers, booleans, null, arrays, objects.
  function jcs(value) {
    if (value === null || typeof value !== "object") {
      return JSON.stringify(value);
    }
    if (Array.isArray(value)) {
      return "[" + value.map(jcs).join(",") + "]";
    }
    // Keys sorted by UTF-16 code units: what Array.prototype.sort does by default.
    return "{" + Object.keys(value).sort().map(function (key) {
      return JSON.stringify(key) + ":" + jcs(value[key]);
    }).join(",") + "}";
  }

  function hex(bytes) {
    return Array.prototype.map.call(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }

  function unhex(text) {
    if (!/^([0-9a-f]{2})*$/.test(text)) { throw new Error("not a hex string"); }
    var out = new Uint8Array(text.length / 2);
    for (var i = 0; i < out.length; i++) { out[i] = parseInt(text.substr(i * 2, 2), 16); }
    return out;
  }

  function fromB64url(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var raw = atob(b64);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { out[i] = raw.charCodeAt(i); }
    return out;
  }

  function toB64url(bytes) {
    var raw = "";
    for (var i = 0; i < bytes.length; i++) { raw += String.fromCharCode(bytes[i]); }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function concat() {
    var total = 0, i;
    for (i = 0; i < arguments.length; i++) { total += arguments[i].length; }
    var out = new Uint8Array(total), at = 0;
    for (i = 0; i < arguments.length; i++) { out.set(arguments[i], at); at += arguments[i].length; }
    return out;
  }

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  function leafHash(data) { return sha256(concat(new Uint8Array([0]), data)); }
  function nodeHash(left, right) { return sha256(concat(new Uint8Array([1]), left, right)); }

  // RFC 9162 §2.1.3.2: the root an inclusion proof leads to, or null if the proof cannot fit this tree.
  async function rootFromPath(index, size, leaf, path) {
    if (index >= size) { return null; }
    var fn = index, sn = size - 1, r = leaf;
    for (var i = 0; i < path.length; i++) {
      var p = path[i];
      if (sn === 0) { return null; }
      if ((fn & 1) === 1 || fn === sn) {
        r = await nodeHash(p, r);
        if ((fn & 1) === 0) {
          while ((fn & 1) === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
        }
      } else {
        r = await nodeHash(r, p);
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
    }
    return sn === 0 ? r : null;
  }

  async function verifyTreeHead(sth, jwks) {
    var parts = sth.signature.split(".");
    if (parts.length !== 3 || parts[1] !== "") { throw new Error("the signature is not a detached JWS"); }
    var header = JSON.parse(new TextDecoder().decode(fromB64url(parts[0])));
    if (header.alg !== "EdDSA") { throw new Error("signature algorithm " + header.alg + " is not EdDSA"); }
    if (header.typ !== TREE_HEAD_TYP) { throw new Error("signature type " + header.typ + " is not " + TREE_HEAD_TYP); }
    var jwk = (jwks.keys || []).find(function (k) {
      return k.kid === header.kid && k.kty === "OKP" && k.crv === "Ed25519";
    });
    if (!jwk) { throw new Error("the node publishes no Ed25519 key " + header.kid); }
    var key = await crypto.subtle.importKey(
      "jwk", { kty: "OKP", crv: "Ed25519", x: jwk.x }, { name: "Ed25519" }, false, ["verify"]);
    var input = encoder.encode(parts[0] + "." + toB64url(encoder.encode(jcs(sth.tree_head))));
    return { ok: await crypto.subtle.verify({ name: "Ed25519" }, key, fromB64url(parts[2]), input), kid: header.kid };
  }

  function step(list, ok, text) {
    var item = document.createElement("li");
    item.setAttribute("data-ok", ok ? "true" : "false");
    item.textContent = (ok ? "Passed: " : "Failed: ") + text;
    list.appendChild(item);
  }

  function verdict(box, ok, text) {
    box.setAttribute("data-state", ok ? "verified" : "failed");
    box.className = "proof-result proof-result--" + (ok ? "verified" : "failed");
    box.textContent = "";
    var p = document.createElement("p");
    p.className = "proof-result__verdict";
    var tag = document.createElement("strong");
    tag.className = "tag tag--" + (ok ? "green" : "red");
    tag.id = "proof-verdict";
    tag.textContent = ok ? "verified" : "FAILED";
    p.appendChild(tag);
    p.appendChild(document.createTextNode(" " + text));
    box.appendChild(p);
  }

  async function run() {
    var box = document.getElementById("proof-result");
    var steps = document.getElementById("proof-steps");
    var data = JSON.parse(document.getElementById("proof-data").textContent);
    var sth = data.signed_tree_head;
    var head = sth.tree_head;
    var ok = true;
    try {
      if (!window.crypto || !crypto.subtle) { throw new Error("this browser has no WebCrypto here (it needs https or localhost)"); }
      var leaf = await leafHash(encoder.encode(jcs(data.entry)));
      var leafOk = hex(leaf) === data.leaf_hash;
      step(steps, leafOk, "the entry hashes to " + hex(leaf) + (leafOk ? ", the leaf hash the log holds" : ", not the leaf hash the log holds (" + data.leaf_hash + ")"));
      ok = ok && leafOk;

      var path = data.audit_path.map(unhex);
      var root = await rootFromPath(data.index, head.tree_size, leaf, path);
      var rootOk = root !== null && hex(root) === head.root_hash;
      step(steps, rootOk, root === null
        ? "the audit path does not fit a tree of " + head.tree_size + " entries"
        : "the audit path leads to root " + hex(root) + (rootOk ? ", the signed root" : ", not the signed root " + head.root_hash));
      ok = ok && rootOk;

      var nodeOk = data.entry.node_id === head.node_id;
      step(steps, nodeOk, "the entry and the tree head are both from node " + head.node_id);
      ok = ok && nodeOk;

      var response = await fetch(data.jwks_url, { credentials: "omit", headers: { Accept: "application/json" } });
      if (!response.ok) { throw new Error("the node's keys cannot be fetched (" + response.status + ")"); }
      var signature = await verifyTreeHead(sth, await response.json());
      step(steps, signature.ok, "the tree head's Ed25519 signature " + (signature.ok ? "verifies" : "does not verify") + " with key " + signature.kid);
      ok = ok && signature.ok;
    } catch (error) {
      ok = false;
      step(steps, false, String(error && error.message ? error.message : error));
    }
    verdict(box, ok, ok
      ? "Entry " + data.index + " is in the log of " + head.tree_size + " entries that node " + head.node_id + " signed."
      : "This entry cannot be shown to be in the node's signed log. Report it to the node's administrator.");
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", run);
  } else {
    run();
  }
}());
