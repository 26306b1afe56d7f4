//! Process memory settings applied at start: transparent huge pages off for the vault's
//! processes, so resident memory is not held in 2 MiB granules the allocator cannot return.
//!
//! Why: mimalloc (the global allocator) asks for transparent huge pages on its arenas
//! (`MADV_HUGEPAGE`), and the kernel's `khugepaged` collapses any 2 MiB range with a single
//! touched 4 KiB page into a huge page (`max_ptes_none` = 511 by default), while mimalloc
//! returns freed memory in 64 KiB pieces that cannot shrink a huge page. Under the vault's
//! churn (many threads, short-lived buffers) that kept RSS far above the live heap: a fifth of
//! the server's memory was huge pages a minute into a soak, and with them off the soak's level
//! is about 30% lower (measured A/B; the history is in git). The server and
//! `vaultctl` gain nothing measurable from huge pages (their hot data is small and scattered),
//! so they opt out for the process.

/// Turns transparent huge pages off for this process and its children
/// (`prctl(PR_SET_THP_DISABLE)`, Linux 3.15+; memory already mapped keeps its pages).
/// Returns whether it is now off; `false` where the kernel refuses (nothing else changes).
pub fn disable_transparent_huge_pages() -> bool {
    rustix::thread::disable_transparent_huge_pages(true).is_ok()
        && rustix::thread::transparent_huge_pages_are_disabled().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn huge_pages_are_off_after_the_call_and_children_inherit_it() {
        assert!(super::disable_transparent_huge_pages());
        // The kernel reports the flag per process; a child started now inherits it.
        let status = std::process::Command::new("grep")
            .args(["THP_enabled", "/proc/self/status"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if !status.is_empty() {
            assert_eq!(
                status.split(':').nth(1).map(str::trim),
                Some("0"),
                "child status: {status}"
            );
        }
    }
}
