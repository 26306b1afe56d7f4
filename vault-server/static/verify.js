// verify.js: browser-side verification of audit-log receipts. It owns RFC 9162 Merkle
// hashing (leaf/node hashes, inclusion and consistency proofs), C2SP signed-note
// checkpoints with Ed25519 verifier keys, and the auto-check on receipt/proof pages.
// No dependencies: WebCrypto, TextEncoder and atob/btoa only. Mirrors
// vault-core/src/audit/{merkle,note}.rs; keep the two in step.

const enc = new TextEncoder();
const DASH = "\u2014 "; // em dash + space, starts every signature line
const MAX_NOTE = 64 * 1024;

// ---- byte helpers

const eq = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

function cat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export const bytesToHex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

export function hexToBytes(s) {
  if (typeof s !== "string" || !/^(?:[0-9a-fA-F]{2})*$/.test(s)) throw new Error("bad hex");
  return Uint8Array.from({ length: s.length / 2 }, (_, i) => parseInt(s.substr(2 * i, 2), 16));
}

// Strict standard base64: padded and canonical (re-encodes to the same text), so no
// two encodings of one signature or root are both accepted.
export function b64ToBytes(s) {
  let bin = null;
  try { bin = typeof s === "string" ? atob(s) : null; } catch { /* bad input */ }
  if (bin === null || btoa(bin) !== s) throw new Error("bad base64");
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

// A 32-byte hash given as bytes or hex.
function hash32(h) {
  const b = typeof h === "string" ? hexToBytes(h) : h;
  if (!(b instanceof Uint8Array) || b.length !== 32) throw new Error("bad hash");
  return b;
}

function hashList(list) {
  if (!Array.isArray(list)) throw new Error("proof is not a list of hashes");
  return list.map(hash32);
}

// Tree sizes and indexes as BigInt, so bit operations stay exact past 2^31.
function u64(n, what) {
  if (typeof n === "bigint" && n >= 0n) return n;
  if (Number.isSafeInteger(n) && n >= 0) return BigInt(n);
  throw new Error(`bad ${what}`);
}

// ---- RFC 9162 §2.1 Merkle tree

async function sha256(...parts) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", cat(...parts)));
}

export const leafHash = (entry) => sha256([0], entry);
const nodeHash = (left, right) => sha256([1], left, right);

// §2.1.3.2: the root implied by an inclusion proof. Throws on a malformed proof.
export async function rootFromInclusion(index, treeSize, leaf, proofHashes) {
  let fn = u64(index, "leaf index");
  let sn = u64(treeSize, "tree size");
  let r = hash32(leaf);
  const path = hashList(proofHashes);
  if (fn >= sn) throw new Error("leaf index is outside the tree");
  sn -= 1n;
  for (const p of path) {
    if (sn === 0n) throw new Error("inclusion proof is too long");
    if (fn & 1n || fn === sn) {
      r = await nodeHash(p, r);
      while (!(fn & 1n) && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n; sn >>= 1n;
  }
  if (sn !== 0n) throw new Error("inclusion proof is too short");
  return r;
}

// §2.1.4.2: does the tree (size2, root2) extend the tree (size1, root1)?
export async function verifyConsistency(size1, size2, root1, root2, proofHashes) {
  const n1 = u64(size1, "tree size"), n2 = u64(size2, "tree size");
  const r1 = hash32(root1), r2 = hash32(root2), path = hashList(proofHashes);
  if (n1 > n2) return false;
  if (n1 === n2) return path.length === 0 && eq(r1, r2);
  if (n1 === 0n) return path.length === 0;
  if (path.length === 0) return false;
  if ((n1 & (n1 - 1n)) === 0n) path.unshift(r1); // size1 is a power of two
  let fn = n1 - 1n, sn = n2 - 1n;
  while (fn & 1n) { fn >>= 1n; sn >>= 1n; }
  let fr = path[0], sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0n) return false;
    if (fn & 1n || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      while (!(fn & 1n) && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn >>= 1n; sn >>= 1n;
  }
  return sn === 0n && eq(fr, r1) && eq(sr, r2);
}

// ---- C2SP signed notes and tlog checkpoints

// Splits a note into its signed body (with final newline) and signature lines.
export function parseNote(text) {
  if (typeof text !== "string" || enc.encode(text).length > MAX_NOTE) throw new Error("bad note");
  const at = text.indexOf("\n\n");
  if (at < 0) throw new Error("note has no signatures");
  const body = text.slice(0, at + 1), block = text.slice(at + 2);
  if (!block.endsWith("\n")) throw new Error("note must end with a newline");
  const signatures = block.slice(0, -1).split("\n").map((line) => {
    const sp = line.indexOf(" ", DASH.length);
    if (!line.startsWith(DASH) || sp < 0) throw new Error("bad signature line");
    const blob = b64ToBytes(line.slice(sp + 1));
    if (blob.length < 5) throw new Error("signature too short");
    return { name: line.slice(DASH.length, sp), keyHash: blob.slice(0, 4), sig: blob.slice(4) };
  });
  return { body, signatures };
}

// Parses (without verifying) a checkpoint note: origin, tree size, root hash.
export function parseCheckpoint(text) {
  const { body, signatures } = parseNote(text);
  const lines = body.split("\n"); // the final newline leaves an empty 4th part
  if (lines.length !== 4 || !lines[0]) throw new Error("malformed checkpoint");
  const [origin, sizeText, rootText] = lines;
  const size = Number(sizeText);
  if (!/^(?:0|[1-9][0-9]*)$/.test(sizeText) || !Number.isSafeInteger(size)) {
    throw new Error("bad checkpoint tree size");
  }
  const root = b64ToBytes(rootText);
  if (root.length !== 32) throw new Error("bad checkpoint root");
  return { origin, size, root, body, signatures };
}

// Parses `<name>+<hex key hash>+<base64(0x01 || Ed25519 public key)>` and checks its hash.
export async function parseVerifierKey(s) {
  const t = String(s).trimEnd(), i = t.indexOf("+"), j = t.indexOf("+", i + 1);
  if (i <= 0 || j < 0 || /\s/.test(t.slice(0, i))) throw new Error("malformed log key");
  const name = t.slice(0, i), raw = b64ToBytes(t.slice(j + 1));
  if (raw.length !== 33 || raw[0] !== 1) throw new Error("log key is not an Ed25519 key");
  const pub = raw.slice(1);
  const keyHash = (await sha256(enc.encode(name + "\n"), raw)).slice(0, 4);
  if (bytesToHex(keyHash) !== t.slice(i + 1, j)) throw new Error("log key hash does not match");
  return { name, keyHash, pub };
}

// Checks a note's signature by `key` (parsed); returns its body. Lines by other keys are
// ignored; a line by this key that does not verify fails the note.
async function checkNote(text, key) {
  const { body, signatures } = parseNote(text);
  let signed = false, pub = null;
  for (const s of signatures) {
    if (s.name !== key.name || !eq(s.keyHash, key.keyHash)) continue;
    try {
      pub ??= await crypto.subtle.importKey("raw", key.pub, { name: "Ed25519" }, false, ["verify"]);
    } catch {
      throw new Error("this browser cannot check Ed25519 signatures");
    }
    const ok = await crypto.subtle.verify({ name: "Ed25519" }, pub, s.sig, enc.encode(body)).catch(() => false);
    if (!ok) throw new Error("checkpoint signature is invalid");
    signed = true;
  }
  if (!signed) throw new Error("checkpoint is not signed by the log key");
  return body;
}

// Any signed note: returns its body if `verifierKey` signed it.
export async function openNote(text, verifierKey) {
  return checkNote(text, await parseVerifierKey(verifierKey));
}

// A signed checkpoint: its origin must be the key's name (as the server requires).
export async function verifyNote(text, verifierKey) {
  const key = await parseVerifierKey(verifierKey);
  const { origin, size, root } = parseCheckpoint(text);
  await checkNote(text, key);
  if (origin !== key.name) throw new Error("checkpoint origin is not the log key's name");
  return { origin, size, root };
}

// Structural JSON equality, ignoring object key order.
function sameJson(a, b) {
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return a === b;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && sameJson(a[k], b[k]));
}

// A receipt from GET /v1/me/accesses/{index}/proof (or an auditor's proof object).
export async function verifyReceipt(receipt, verifierKey) {
  if (!receipt || typeof receipt !== "object") throw new Error("receipt is not an object");
  const entry = b64ToBytes(receipt.entry_b64);
  const leaf = await leafHash(entry);
  if (!eq(leaf, hash32(receipt.leaf_hash))) throw new Error("entry does not match its leaf hash");
  if (receipt.entry !== undefined) {
    let logged;
    try { logged = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(entry)); } catch {
      throw new Error("logged entry is not JSON");
    }
    if (!sameJson(logged, receipt.entry)) throw new Error("shown entry differs from the logged entry");
  }
  const cp = await verifyNote(receipt.checkpoint, verifierKey);
  if (u64(receipt.tree_size, "tree size") !== BigInt(cp.size)) {
    throw new Error("checkpoint size differs from the proof's tree size");
  }
  const root = await rootFromInclusion(receipt.index, receipt.tree_size, leaf, receipt.hashes);
  if (!eq(root, cp.root)) throw new Error("inclusion proof does not match the checkpoint root");
  return true;
}

// ---- page auto-check: #receipt-data/#receipt-status and #proof-data/#proof-status

/** Two signed checkpoints and a consistency proof between them: both signatures check, and
 * the proof shows the older tree is a prefix of the newer (`{"old","new","hashes"}`). */
export async function verifyCheckpointPair(pair, verifierKey) {
  const a = await verifyNote(pair.old, verifierKey);
  const b = await verifyNote(pair.new, verifierKey);
  if (!(await verifyConsistency(a.size, b.size, a.root, b.root, pair.hashes))) {
    throw new Error("the checkpoints are not consistent");
  }
  return true;
}

export async function autoVerify(doc) {
  let key = null;
  const getKey = () => (key ??= fetch("/v1/audit/pubkey", { credentials: "omit" }).then((res) => {
    if (!res.ok) throw new Error(`cannot fetch the log key (HTTP ${res.status})`);
    return res.text();
  }));
  await Promise.all(["receipt", "proof", "consistency"].map(async (p) => {
    const data = doc.getElementById(`${p}-data`), status = doc.getElementById(`${p}-status`);
    if (!data || !status) return;
    let reason = "";
    try {
      let receipt;
      try { receipt = JSON.parse(data.textContent); } catch { throw new Error("receipt data is not JSON"); }
      if (p === "consistency") await verifyCheckpointPair(receipt, await getKey());
      else await verifyReceipt(receipt, await getKey());
    } catch (e) {
      reason = (e && e.message) || String(e);
    }
    const state = reason ? "failed" : "verified";
    status.textContent = status.getAttribute(`data-${state}`) ?? state;
    status.setAttribute("data-state", state);
    const why = doc.getElementById(`${p}-reason`);
    if (why && reason) why.textContent = reason;
  }));
}

if (typeof document !== "undefined") {
  const run = () => autoVerify(document);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", run, { once: true });
  else run();
}
