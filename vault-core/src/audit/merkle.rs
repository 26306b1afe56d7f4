//! RFC 9162 §2.1 Merkle tree hashing: leaf and node hashes, roots of any size, inclusion and
//! consistency proofs (generation over any `NodeSource`, verification as in §2.1.3.2 and
//! §2.1.4.2). Pure functions; storage of node hashes is the caller's business.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256()`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Why a proof was rejected or could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Index or sizes out of range.
    #[error("index or tree size out of range")]
    OutOfRange,
    /// The proof has the wrong number of hashes.
    #[error("proof has the wrong length")]
    WrongLength,
    /// The recomputed root does not match.
    #[error("proof does not match the root")]
    Mismatch,
    /// A node could not be read.
    #[error("tree node unavailable: {0}")]
    Unavailable(String),
}

/// Complete, aligned subtrees of a tree: node `index` at `level` covers leaves
/// `[index << level, (index + 1) << level)`.
pub trait NodeSource {
    /// Number of leaves.
    fn size(&self) -> u64;
    /// The hash of a complete aligned subtree inside the tree.
    fn node(&self, level: u32, index: u64) -> Result<Hash, ProofError>;
}

/// The largest power of two strictly smaller than `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// MTH of leaves `[start, end)`, where `start` is aligned to a power of two ≥ `end - start`
/// (the only ranges RFC 9162's recursion produces).
pub fn range_hash<S: NodeSource + ?Sized>(
    src: &S,
    start: u64,
    end: u64,
) -> Result<Hash, ProofError> {
    let n = end - start;
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && start.is_multiple_of(n) {
        let level = n.trailing_zeros();
        return src.node(level, start >> level);
    }
    let k = split(n);
    Ok(node_hash(
        &range_hash(src, start, start + k)?,
        &range_hash(src, start + k, end)?,
    ))
}

/// The root of the first `size` leaves.
pub fn root<S: NodeSource + ?Sized>(src: &S, size: u64) -> Result<Hash, ProofError> {
    if size > src.size() {
        return Err(ProofError::OutOfRange);
    }
    range_hash(src, 0, size)
}

/// Inclusion proof of leaf `index` in the tree of the first `size` leaves (RFC 6962 PATH).
pub fn inclusion_proof<S: NodeSource + ?Sized>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError> {
    if index >= size || size > src.size() {
        return Err(ProofError::OutOfRange);
    }
    let mut out = Vec::new();
    path(src, index, 0, size, &mut out)?;
    Ok(out)
}

fn path<S: NodeSource + ?Sized>(
    src: &S,
    m: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(src, m, start, start + k, out)?;
        out.push(range_hash(src, start + k, end)?);
    } else {
        path(src, m - k, start + k, end, out)?;
        out.push(range_hash(src, start, start + k)?);
    }
    Ok(())
}

/// Consistency proof between the trees of sizes `first` ≤ `second` (RFC 6962 PROOF).
pub fn consistency_proof<S: NodeSource + ?Sized>(
    src: &S,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, ProofError> {
    if first > second || second > src.size() {
        return Err(ProofError::OutOfRange);
    }
    let mut out = Vec::new();
    if first > 0 && first < second {
        subproof(src, first, 0, second, true, &mut out)?;
    }
    Ok(out)
}

fn subproof<S: NodeSource + ?Sized>(
    src: &S,
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    let n = end - start;
    if m == n {
        if !whole {
            out.push(range_hash(src, start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(src, m, start, start + k, whole, out)?;
        out.push(range_hash(src, start + k, end)?);
    } else {
        subproof(src, m - k, start + k, end, false, out)?;
        out.push(range_hash(src, start, start + k)?);
    }
    Ok(())
}

/// RFC 9162 §2.1.3.2: checks that `leaf` is at `index` in the tree of `size` with `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange);
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r == root {
        Ok(())
    } else {
        Err(ProofError::Mismatch)
    }
}

/// RFC 9162 §2.1.4.2: checks that the tree of `second` with `second_root` extends the tree of
/// `first` with `first_root`.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if first > second {
        return Err(ProofError::OutOfRange);
    }
    if first == second {
        return if !proof.is_empty() {
            Err(ProofError::WrongLength)
        } else if first_root == second_root {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        };
    }
    if first == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    let mut path: Vec<&Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(first_root);
    }
    path.extend(proof.iter());
    let (mut fnode, mut snode) = (first - 1, second - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*path[0], *path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr == first_root && &sr == second_root {
        Ok(())
    } else {
        Err(ProofError::Mismatch)
    }
}

/// An in-memory tree holding every level: for tests, verification and small logs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf hash, completing parents as pairs fill.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(h);
            if row.len() % 2 == 1 {
                break;
            }
            h = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
            level += 1;
        }
    }

    /// Keeps the first `n` leaves: every level keeps the complete nodes over them (which do
    /// not change), so the cut costs no hashing.
    pub fn truncate(&mut self, n: u64) {
        for (level, row) in self.levels.iter_mut().enumerate() {
            let keep = n.checked_shr(level as u32).unwrap_or(0);
            row.truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        }
        while self.levels.last().is_some_and(Vec::is_empty) {
            self.levels.pop();
        }
    }

    /// The hash of leaf `i`.
    pub fn leaf(&self, i: u64) -> Option<Hash> {
        self.levels
            .first()
            .and_then(|l| l.get(usize::try_from(i).ok()?))
            .copied()
    }
}

impl NodeSource for MemoryTree {
    fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    fn node(&self, level: u32, index: u64) -> Result<Hash, ProofError> {
        self.levels
            .get(level as usize)
            .and_then(|l| l.get(usize::try_from(index).ok()?))
            .copied()
            .ok_or(ProofError::OutOfRange)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn unhex(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    fn vectors() -> Value {
        let p =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/rfc6962-vectors.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    }

    fn vector_tree(v: &Value) -> MemoryTree {
        let mut t = MemoryTree::new();
        for l in v["leaf_inputs_hex"].as_array().unwrap() {
            t.push(leaf_hash(&hex::decode(l.as_str().unwrap()).unwrap()));
        }
        t
    }

    #[test]
    fn roots_match_the_reference_for_every_size() {
        let v = vectors();
        let t = vector_tree(&v);
        for (size, r) in v["root_by_tree_size_hex"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            assert_eq!(
                root(&t, size as u64).unwrap(),
                unhex(r.as_str().unwrap()),
                "size {size}"
            );
        }
    }

    fn proof_of(p: &Value) -> Vec<Hash> {
        p["proof_hex"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| unhex(h.as_str().unwrap()))
            .collect()
    }

    #[test]
    fn reference_inclusion_proofs_verify_and_corruptions_fail() {
        let v = vectors();
        let t = vector_tree(&v);
        for case in v["inclusion"].as_array().unwrap() {
            let (i, n) = (
                case["leaf_index"].as_u64().unwrap(),
                case["tree_size"].as_u64().unwrap(),
            );
            let proof = proof_of(case);
            assert_eq!(
                inclusion_proof(&t, i, n).unwrap(),
                proof,
                "generated proof {i}/{n}"
            );
            let r = root(&t, n).unwrap();
            let leaf = t.leaf(i).unwrap();
            verify_inclusion(i, n, &leaf, &proof, &r).unwrap();
            // Corrupted variants.
            assert!(verify_inclusion(i + 1, n, &leaf, &proof, &r).is_err());
            if i > 0 {
                assert!(verify_inclusion(i - 1, n, &leaf, &proof, &r).is_err());
            }
            assert!(verify_inclusion(i, n * 2, &leaf, &proof, &r).is_err());
            assert!(verify_inclusion(i, n / 2, &leaf, &proof, &r).is_err());
            for k in 0..proof.len() {
                for bit in [0, 77, 255] {
                    let mut bad = proof.clone();
                    bad[k][bit / 8] ^= 1 << (bit % 8);
                    assert!(verify_inclusion(i, n, &leaf, &bad, &r).is_err());
                }
            }
            let mut longer = proof.clone();
            longer.push([0; 32]);
            assert!(verify_inclusion(i, n, &leaf, &longer, &r).is_err());
            if !proof.is_empty() {
                assert!(verify_inclusion(i, n, &leaf, &proof[..proof.len() - 1], &r).is_err());
            }
            let other_root = root(&t, n - 1).unwrap();
            assert!(verify_inclusion(i, n, &leaf, &proof, &other_root).is_err());
        }
    }

    #[test]
    fn reference_consistency_proofs_verify_and_corruptions_fail() {
        let v = vectors();
        let t = vector_tree(&v);
        for case in v["consistency"].as_array().unwrap() {
            let (m, n) = (
                case["size1"].as_u64().unwrap(),
                case["size2"].as_u64().unwrap(),
            );
            let proof = proof_of(case);
            assert_eq!(
                consistency_proof(&t, m, n).unwrap(),
                proof,
                "generated proof {m}->{n}"
            );
            let (r1, r2) = (root(&t, m).unwrap(), root(&t, n).unwrap());
            verify_consistency(m, n, &r1, &r2, &proof).unwrap();
            if m != n {
                assert!(
                    verify_consistency(m, n, &r2, &r1, &proof).is_err(),
                    "swapped roots"
                );
                assert!(verify_consistency(m + 1, n, &r1, &r2, &proof).is_err());
                assert!(verify_consistency(m, n * 2, &r1, &r2, &proof).is_err());
                for k in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[k][5] ^= 0x10;
                    assert!(verify_consistency(m, n, &r1, &r2, &bad).is_err());
                }
                let mut longer = proof.clone();
                longer.push([7; 32]);
                assert!(verify_consistency(m, n, &r1, &r2, &longer).is_err());
                if !proof.is_empty() {
                    assert!(verify_consistency(m, n, &r1, &r2, &proof[1..]).is_err());
                }
            }
        }
    }

    #[test]
    fn every_proof_up_to_130_leaves_verifies() {
        let mut t = MemoryTree::new();
        for i in 0..130u32 {
            t.push(leaf_hash(&i.to_be_bytes()));
        }
        let roots: Vec<Hash> = (0..=130).map(|n| root(&t, n).unwrap()).collect();
        for n in 1..=130u64 {
            for i in 0..n {
                let p = inclusion_proof(&t, i, n).unwrap();
                verify_inclusion(i, n, &t.leaf(i).unwrap(), &p, &roots[n as usize]).unwrap();
                assert!(
                    verify_inclusion(
                        i,
                        n,
                        &t.leaf((i + 1) % 130).unwrap(),
                        &p,
                        &roots[n as usize]
                    )
                    .is_err()
                );
            }
        }
        for m in 0..=130u64 {
            for n in m..=130u64 {
                let p = consistency_proof(&t, m, n).unwrap();
                verify_consistency(m, n, &roots[m as usize], &roots[n as usize], &p).unwrap();
                if m > 0 && m < n {
                    let mut bad = p.clone();
                    bad[0][0] ^= 1;
                    assert!(
                        verify_consistency(m, n, &roots[m as usize], &roots[n as usize], &bad)
                            .is_err()
                    );
                }
            }
        }
    }
}
