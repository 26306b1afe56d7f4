//! The log's Merkle tree in memory at 1/64 of its size: complete 64-leaf chunks are kept as
//! their roots (an in-memory tree above them); lower nodes are recomputed from the 64 leaf
//! hashes of one chunk, read from the leaf index file. 10 million entries take ~10 MB.

use std::cell::RefCell;

use super::merkle::{Hash, MemoryTree, NodeSource, ProofError, root};

/// log2 of the chunk size.
pub const CHUNK_BITS: u32 = 6;
/// Leaves per chunk.
pub const CHUNK: u64 = 1 << CHUNK_BITS;

/// Reads leaf hashes by index.
pub trait LeafReader {
    /// `count` leaf hashes starting at `start`.
    fn leaves(&self, start: u64, count: u64) -> Result<Vec<Hash>, ProofError>;
}

/// Chunk roots plus the leaves of the incomplete last chunk.
#[derive(Debug, Default, Clone)]
pub struct ChunkedTree {
    upper: MemoryTree,
    tail: Vec<Hash>,
}

impl ChunkedTree {
    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.upper.size() * CHUNK + self.tail.len() as u64
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.tail.push(leaf);
        if self.tail.len() as u64 == CHUNK {
            let mut t = MemoryTree::new();
            for h in self.tail.drain(..) {
                t.push(h);
            }
            if let Ok(r) = root(&t, CHUNK) {
                self.upper.push(r);
            }
        }
    }

    /// Cuts the tree back to `n` leaves, reloading a partial last chunk through `reader`.
    pub fn truncate(&mut self, n: u64, reader: &dyn LeafReader) -> Result<(), ProofError> {
        if n >= self.size() {
            return Ok(());
        }
        let chunks = n / CHUNK;
        let tail = reader.leaves(chunks * CHUNK, n - chunks * CHUNK)?;
        self.upper.truncate(chunks);
        self.tail = tail;
        Ok(())
    }

    /// A node source over the first `size` leaves.
    pub fn view<'a>(&'a self, size: u64, reader: &'a dyn LeafReader) -> TreeView<'a> {
        TreeView {
            tree: self,
            size: size.min(self.size()),
            reader,
            cache: RefCell::new(None),
        }
    }
}

/// A read-only view of the first `size` leaves.
pub struct TreeView<'a> {
    tree: &'a ChunkedTree,
    size: u64,
    reader: &'a dyn LeafReader,
    cache: RefCell<Option<(u64, MemoryTree)>>,
}

impl std::fmt::Debug for TreeView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeView")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl TreeView<'_> {
    fn chunk_tree(&self, chunk: u64) -> Result<MemoryTree, ProofError> {
        if let Some((c, t)) = self.cache.borrow().as_ref()
            && *c == chunk
        {
            return Ok(t.clone());
        }
        let complete = self.tree.upper.size();
        let leaves = if chunk < complete {
            self.reader.leaves(chunk * CHUNK, CHUNK)?
        } else {
            self.tree.tail.clone()
        };
        let mut t = MemoryTree::new();
        for h in leaves {
            t.push(h);
        }
        *self.cache.borrow_mut() = Some((chunk, t.clone()));
        Ok(t)
    }
}

impl NodeSource for TreeView<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    fn node(&self, level: u32, index: u64) -> Result<Hash, ProofError> {
        let end = (index + 1)
            .checked_shl(level)
            .ok_or(ProofError::OutOfRange)?;
        if end > self.size {
            return Err(ProofError::OutOfRange);
        }
        if level >= CHUNK_BITS {
            return self.tree.upper.node(level - CHUNK_BITS, index);
        }
        let first_leaf = index << level;
        let chunk = first_leaf >> CHUNK_BITS;
        let t = self.chunk_tree(chunk)?;
        t.node(level, index - (chunk << (CHUNK_BITS - level)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::merkle::{inclusion_proof, leaf_hash, verify_inclusion};
    use super::*;

    struct Mem(Vec<Hash>);
    impl LeafReader for Mem {
        fn leaves(&self, start: u64, count: u64) -> Result<Vec<Hash>, ProofError> {
            Ok(self.0[start as usize..(start + count) as usize].to_vec())
        }
    }

    #[test]
    fn chunked_tree_agrees_with_the_full_tree_for_every_size_and_proof() {
        let leaves: Vec<Hash> = (0..300u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let reader = Mem(leaves.clone());
        let mut full = MemoryTree::new();
        let mut chunked = ChunkedTree::default();
        for (i, h) in leaves.iter().enumerate() {
            full.push(*h);
            chunked.push(*h);
            let n = i as u64 + 1;
            let v = chunked.view(n, &reader);
            assert_eq!(root(&v, n).unwrap(), root(&full, n).unwrap(), "size {n}");
        }
        for n in [1u64, 63, 64, 65, 128, 200, 300] {
            let v = chunked.view(n, &reader);
            let r = root(&full, n).unwrap();
            for i in (0..n).step_by(7) {
                let p = inclusion_proof(&v, i, n).unwrap();
                assert_eq!(p, inclusion_proof(&full, i, n).unwrap());
                verify_inclusion(i, n, &leaves[i as usize], &p, &r).unwrap();
            }
        }
        chunked.truncate(130, &reader).unwrap();
        assert_eq!(chunked.size(), 130);
        assert_eq!(
            root(&chunked.view(130, &reader), 130).unwrap(),
            root(&full, 130).unwrap()
        );
    }

    proptest::proptest! {
        /// A tree cut back to `n` leaves (and grown again) is the tree of those leaves.
        #[test]
        fn a_cut_tree_equals_the_tree_of_its_leaves(m in 0u64..700, cut in 0u64..700, more in 0u64..200) {
            let n = cut.min(m);
            let leaves: Vec<Hash> = (0..m + more).map(|i| leaf_hash(&i.to_be_bytes())).collect();
            let reader = Mem(leaves.clone());
            let mut chunked = ChunkedTree::default();
            let mut small = MemoryTree::new();
            for (i, h) in leaves.iter().take(m as usize).enumerate() {
                chunked.push(*h);
                small.push(*h);
                proptest::prop_assert_eq!(small.size(), i as u64 + 1);
            }
            chunked.truncate(n, &reader).unwrap();
            small.truncate(n);
            let mut fresh = MemoryTree::new();
            for h in leaves.iter().take(n as usize) {
                fresh.push(*h);
            }
            proptest::prop_assert_eq!(&small, &fresh);
            for h in &leaves[n as usize..] {
                chunked.push(*h);
                fresh.push(*h);
            }
            let size = fresh.size();
            proptest::prop_assert_eq!(chunked.size(), size);
            if size > 0 {
                proptest::prop_assert_eq!(
                    root(&chunked.view(size, &reader), size).unwrap(),
                    root(&fresh, size).unwrap()
                );
            }
        }
    }
}
