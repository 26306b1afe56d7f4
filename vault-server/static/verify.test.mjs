// Tests for verify.js: RFC 6962/9162 vectors, the C2SP signed-note vector, a synthetic
// signed receipt, and the page auto-check. Run: node vault-server/static/verify.test.mjs
// The reference Merkle tree below is an independent, synchronous RFC 6962 implementation
// (node:crypto), used to generate every proof for small trees.

import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import * as v from "./verify.js";

// Vectors: the repo copy (vault-core/testdata), else the shared copy.
const dirs = [new URL("../../vault-core/testdata/", import.meta.url), new URL("file:///work/shared/testdata/")];
const vector = (name) => {
  const dir = dirs.find((d) => existsSync(new URL(name, d)));
  return JSON.parse(readFileSync(new URL(name, dir), "utf8"));
};
const rfc = vector("rfc6962-vectors.json");
const noteVec = vector("signed-note-vector.json");

const hex = (b) => Buffer.from(b).toString("hex");
const b64 = (b) => Buffer.from(b).toString("base64");
const unhex = (s) => new Uint8Array(Buffer.from(s, "hex"));
const sha = (...p) => new Uint8Array(createHash("sha256").update(Buffer.concat(p.map((x) => Buffer.from(x)))).digest());

// ---- reference RFC 6962 tree (MTH, PATH, PROOF)
const split = (n) => { let k = 1; while (k * 2 < n) k *= 2; return k; };
const refLeaf = (d) => sha([0], d);
function mth(leaves) {
  if (leaves.length === 0) return sha([]);
  if (leaves.length === 1) return refLeaf(leaves[0]);
  const k = split(leaves.length);
  return sha([1], mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}
function path(m, leaves) {
  if (leaves.length <= 1) return [];
  const k = split(leaves.length);
  return m < k
    ? [...path(m, leaves.slice(0, k)), mth(leaves.slice(k))]
    : [...path(m - k, leaves.slice(k)), mth(leaves.slice(0, k))];
}
function subproof(m, leaves, whole) {
  const n = leaves.length;
  if (m === n) return whole ? [] : [mth(leaves)];
  const k = split(n);
  return m <= k
    ? [...subproof(m, leaves.slice(0, k), whole), mth(leaves.slice(k))]
    : [...subproof(m - k, leaves.slice(k), false), mth(leaves.slice(0, k))];
}
const consistency = (m, leaves) => (m === 0 || m === leaves.length ? [] : subproof(m, leaves, true));

const leaves = rfc.leaf_inputs_hex.map(unhex);
const roots = rfc.root_by_tree_size_hex.map(unhex);

// ---- RFC vectors

test("reference tree reproduces the published roots", () => {
  roots.forEach((r, n) => assert.equal(hex(mth(leaves.slice(0, n))), hex(r)));
});

test("leaf hashes", async () => {
  for (const d of leaves) assert.equal(hex(await v.leafHash(d)), hex(refLeaf(d)));
  // RFC 6962 leaf hash of the empty entry.
  assert.equal(hex(await v.leafHash(new Uint8Array())), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
});

test("published inclusion proofs", async () => {
  for (const c of rfc.inclusion) {
    const leaf = await v.leafHash(leaves[c.leaf_index]);
    const got = await v.rootFromInclusion(c.leaf_index, c.tree_size, leaf, c.proof_hex);
    assert.equal(hex(got), hex(roots[c.tree_size]), `index ${c.leaf_index} size ${c.tree_size}`);
    assert.deepEqual(c.proof_hex, path(c.leaf_index, leaves.slice(0, c.tree_size)).map(hex));
  }
});

test("every inclusion proof in trees of 1..8 leaves, and malformed ones", async () => {
  for (let n = 1; n <= 8; n++) {
    for (let i = 0; i < n; i++) {
      const leaf = await v.leafHash(leaves[i]);
      const p = path(i, leaves.slice(0, n));
      assert.equal(hex(await v.rootFromInclusion(i, n, leaf, p)), hex(roots[n]));
      assert.equal(hex(await v.rootFromInclusion(BigInt(i), BigInt(n), leaf, p.map(hex))), hex(roots[n]));
      await assert.rejects(v.rootFromInclusion(i, n, leaf, [...p, roots[1]]), /too long/);
      if (p.length) await assert.rejects(v.rootFromInclusion(i, n, leaf, p.slice(1)), /too short/);
      if (p.length) {
        const flipped = Uint8Array.from(p[0]);
        flipped[0] ^= 1;
        const other = await v.rootFromInclusion(i, n, leaf, [flipped, ...p.slice(1)]);
        assert.notEqual(hex(other), hex(roots[n]));
      }
    }
    await assert.rejects(v.rootFromInclusion(n, n, roots[1], []), /outside/);
  }
  await assert.rejects(v.rootFromInclusion(0, 2, roots[1], [new Uint8Array(31)]), /bad hash/);
  await assert.rejects(v.rootFromInclusion(-1, 2, roots[1], []), /bad leaf index/);
  await assert.rejects(v.rootFromInclusion(0, 2, roots[1], "00"), /not a list/);
});

test("published consistency proofs", async () => {
  for (const c of rfc.consistency) {
    const args = [c.size1, c.size2, roots[c.size1], roots[c.size2]];
    assert.equal(await v.verifyConsistency(...args, c.proof_hex), true, `${c.size1} -> ${c.size2}`);
    assert.deepEqual(c.proof_hex, consistency(c.size1, leaves.slice(0, c.size2)).map(hex));
  }
});

test("every consistency proof between trees of 0..8 leaves, and bad ones", async () => {
  for (let n2 = 1; n2 <= 8; n2++) {
    for (let n1 = 0; n1 <= n2; n1++) {
      const p = consistency(n1, leaves.slice(0, n2));
      assert.equal(await v.verifyConsistency(n1, n2, roots[n1], roots[n2], p), true, `${n1} -> ${n2}`);
      if (n1 === 0) continue;
      if (n1 !== n2) {
        assert.equal(await v.verifyConsistency(n1, n2, roots[n1 - 1], roots[n2], p), false);
        assert.equal(await v.verifyConsistency(n1, n2, roots[n1], roots[n2 - 1], p), false);
        assert.equal(await v.verifyConsistency(n1, n2, roots[n1], roots[n2], p.slice(0, -1)), false);
        assert.equal(await v.verifyConsistency(n1, n2, roots[n1], roots[n2], [...p, roots[1]]), false);
      }
      assert.equal(await v.verifyConsistency(n2, n1, roots[n2], roots[n1], p), n1 === n2);
    }
  }
  assert.equal(await v.verifyConsistency(3, 3, roots[3], roots[3], [roots[1]]), false);
});

// ---- signed notes

test("signed-note reference vector verifies; changed bytes and wrong keys fail", async () => {
  assert.equal(await v.openNote(noteVec.note, noteVec.verifier_key), noteVec.text);
  assert.equal(await v.openNote(noteVec.note, noteVec.verifier_key + "\n"), noteVec.text);
  const parsed = v.parseNote(noteVec.note);
  assert.equal(parsed.body, noteVec.text);
  assert.equal(parsed.signatures.length, 1);
  assert.equal(parsed.signatures[0].name, "PeterNeumann");
  assert.equal(hex(parsed.signatures[0].keyHash), "c74f20a3");
  assert.equal(parsed.signatures[0].sig.length, 64);

  // Signing the text with the vector's private key reproduces the note (Ed25519 is deterministic).
  const seed = Buffer.from(noteVec.signer_key.split("+").slice(4).join("+"), "base64").subarray(1);
  const pkcs8 = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]);
  const priv = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
  const sig = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, priv, Buffer.from(noteVec.text)));
  assert.equal(hex(sig), hex(parsed.signatures[0].sig));

  // Flip bits in every byte of the note (as the Rust test does): nothing may still verify.
  const bytes = Buffer.from(noteVec.note);
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  let tried = 0;
  for (let i = 0; i < bytes.length; i++) {
    for (const bit of [0x01, 0x20, 0x80]) {
      const bad = Buffer.from(bytes);
      bad[i] ^= bit;
      let text;
      try { text = utf8.decode(bad); } catch { continue; }
      tried++;
      await assert.rejects(v.openNote(text, noteVec.verifier_key), `byte ${i} bit ${bit}`);
    }
  }
  assert.ok(tried > 300);

  // A fresh key under the same name, a renamed key, and a tampered key string all fail.
  const fresh = await newKey("PeterNeumann");
  await assert.rejects(v.openNote(noteVec.note, fresh.verifierKey), /not signed by the log key/);
  const [name, h, k] = noteVec.verifier_key.split("+");
  await assert.rejects(v.openNote(noteVec.note, `Peter+${h}+${k}`), /hash does not match/);
  await assert.rejects(v.openNote(noteVec.note, `${name}+c74f20a4+${k}`), /hash does not match/);
  await assert.rejects(v.openNote(noteVec.note, "PeterNeumann"), /malformed log key/);
  // A second line by the right key with a bad signature fails the whole note.
  const broken = b64([...parsed.signatures[0].keyHash, ...new Uint8Array(64)]);
  await assert.rejects(v.openNote(`${noteVec.note}\u2014 PeterNeumann ${broken}\n`, noteVec.verifier_key), /invalid/);
  // A line by another key is ignored.
  const other = `\u2014 someone.else ${b64(new Uint8Array(68))}\n`;
  assert.equal(await v.openNote(noteVec.note + other, noteVec.verifier_key), noteVec.text);
});

// ---- synthetic receipt

// A fresh Ed25519 key: its C2SP verifier key string and a note signer.
async function newKey(name) {
  const kp = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const raw = new Uint8Array([1, ...new Uint8Array(await crypto.subtle.exportKey("raw", kp.publicKey))]);
  const keyHash = sha(Buffer.from(name + "\n"), raw).slice(0, 4);
  const sign = async (body) => {
    const sig = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, kp.privateKey, Buffer.from(body)));
    return `${body}\n\u2014 ${name} ${b64([...keyHash, ...sig])}\n`;
  };
  return { verifierKey: `${name}+${hex(keyHash)}+${b64(raw)}`, sign };
}

const ORIGIN = "vault.example/audit";
const entries = [0, 1, 2, 3, 4].map((i) =>
  Buffer.from(JSON.stringify({ index: i, event: "dossier.read", agency: "gov.example", fields: ["name"], purpose: `case-${i}` })));

async function makeReceipts(key) {
  const root = mth(entries);
  const checkpoint = await key.sign(`${ORIGIN}\n${entries.length}\n${b64(root)}\n`);
  return entries.map((e, i) => ({
    index: i,
    entry: JSON.parse(e),
    leaf_hash: hex(refLeaf(e)),
    tree_size: entries.length,
    hashes: path(i, entries).map(hex),
    checkpoint,
    entry_b64: b64(e),
  }));
}

test("synthetic 5-leaf receipts verify, and fail when tampered", async () => {
  const key = await newKey(ORIGIN);
  const receipts = await makeReceipts(key);
  const cp = await v.verifyNote(receipts[0].checkpoint, key.verifierKey);
  assert.deepEqual(cp, { origin: ORIGIN, size: 5, root: mth(entries) });
  const parsed = v.parseCheckpoint(receipts[0].checkpoint);
  assert.equal(parsed.body, `${ORIGIN}\n5\n${b64(mth(entries))}\n`);
  assert.equal(parsed.signatures[0].name, ORIGIN);

  for (const r of receipts) assert.equal(await v.verifyReceipt(r, key.verifierKey), true);

  const r = receipts[3];
  const changed = Buffer.from(entries[3]);
  changed[changed.length - 3] ^= 1;
  const bad = async (patch, reason) => assert.rejects(v.verifyReceipt({ ...r, ...patch }, key.verifierKey), reason);
  // Entry bytes changed: the leaf hash no longer matches...
  await bad({ entry_b64: b64(changed) }, /entry does not match its leaf hash/);
  // ...and with a matching leaf hash, the proof no longer leads to the signed root.
  await bad({ entry_b64: b64(changed), leaf_hash: hex(refLeaf(changed)), entry: JSON.parse(changed) },
    /does not match the checkpoint root/);
  await bad({ entry: { ...r.entry, purpose: "other" } }, /shown entry differs/);
  await bad({ index: 2 }, /does not match the checkpoint root/);
  await bad({ hashes: r.hashes.slice(1) }, /too short/);
  await bad({ tree_size: 4 }, /size differs/);
  await bad({ checkpoint: r.checkpoint.replace("\n5\n", "\n6\n") }, /signature is invalid/);
  await bad({ entry_b64: r.entry_b64.replace(/=*$/, "") + "x" }, /bad base64/);

  // Another key, or a valid signature on a checkpoint of another origin, fails.
  await assert.rejects(v.verifyReceipt(r, (await newKey(ORIGIN)).verifierKey), /not signed by the log key/);
  const foreign = await newKey("evil.example/audit");
  const [other] = await makeReceipts(foreign);
  await assert.rejects(v.verifyReceipt(other, foreign.verifierKey), /origin is not the log key's name/);
  // The auditor's proof object (no shown entry) verifies the same way.
  const { entry, ...proof } = r;
  assert.equal(await v.verifyReceipt(proof, key.verifierKey), true);
});

// ---- page auto-check, with a minimal fake DOM and fetch

function fakeElement(attrs = {}, text = "") {
  return {
    textContent: text,
    attrs: { ...attrs },
    getAttribute(n) { return n in this.attrs ? this.attrs[n] : null; },
    setAttribute(n, val) { this.attrs[n] = String(val); },
  };
}

test("autoVerify fills #receipt-status and #proof-status", async () => {
  const key = await newKey(ORIGIN);
  const [r0, r1] = await makeReceipts(key);
  const { entry, ...proof } = r1;
  const tampered = { ...r0, entry_b64: b64(entries[2]) };
  const labels = { "data-verified": "Đã xác minh", "data-failed": "Không xác minh được" };
  const run = async (receipt, proofData) => {
    const els = {
      "receipt-data": fakeElement({}, JSON.stringify(receipt)),
      "receipt-status": fakeElement(labels, "checking…"),
      "receipt-reason": fakeElement(),
      "proof-data": fakeElement({}, JSON.stringify(proofData)),
      "proof-status": fakeElement({}, "checking…"),
    };
    const calls = [];
    const saved = globalThis.fetch;
    globalThis.fetch = async (url, init) => {
      calls.push([url, init]);
      return { ok: true, status: 200, text: async () => key.verifierKey + "\n" };
    };
    try {
      await v.autoVerify({ getElementById: (id) => els[id] ?? null });
    } finally {
      globalThis.fetch = saved;
    }
    assert.deepEqual(calls, [["/v1/audit/pubkey", { credentials: "omit" }]]);
    return els;
  };

  let els = await run(r0, proof);
  assert.equal(els["receipt-status"].textContent, "Đã xác minh");
  assert.equal(els["receipt-status"].attrs["data-state"], "verified");
  assert.equal(els["receipt-reason"].textContent, "");
  assert.equal(els["proof-status"].textContent, "verified");
  assert.equal(els["proof-status"].attrs["data-state"], "verified");

  els = await run(tampered, "not json");
  assert.equal(els["receipt-status"].textContent, "Không xác minh được");
  assert.equal(els["receipt-status"].attrs["data-state"], "failed");
  assert.match(els["receipt-reason"].textContent, /leaf hash/);
  assert.equal(els["proof-status"].attrs["data-state"], "failed");

  // A page with neither block fetches nothing.
  const saved = globalThis.fetch;
  globalThis.fetch = () => assert.fail("fetched without a receipt on the page");
  try {
    await v.autoVerify({ getElementById: () => null });
  } finally {
    globalThis.fetch = saved;
  }
});

test("loading the module on a page runs the check by itself", async () => {
  const key = await newKey(ORIGIN);
  const [r0] = await makeReceipts(key);
  const els = {
    "receipt-data": fakeElement({}, JSON.stringify(r0)),
    "receipt-status": fakeElement({ "data-verified": "Đã xác minh", "data-failed": "Thất bại" }, "checking…"),
  };
  const saved = globalThis.fetch;
  globalThis.fetch = async () => ({ ok: true, status: 200, text: async () => key.verifierKey });
  globalThis.document = { readyState: "complete", getElementById: (id) => els[id] ?? null };
  try {
    await import("./verify.js?page"); // a fresh module instance, now with a `document`
    assert.equal(els["receipt-status"].textContent, "checking…"); // untouched while working
    for (let i = 0; i < 100 && !els["receipt-status"].attrs["data-state"]; i++) {
      await new Promise((ok) => setTimeout(ok, 5));
    }
  } finally {
    globalThis.fetch = saved;
    delete globalThis.document;
  }
  assert.equal(els["receipt-status"].attrs["data-state"], "verified");
  assert.equal(els["receipt-status"].textContent, "Đã xác minh");
});
