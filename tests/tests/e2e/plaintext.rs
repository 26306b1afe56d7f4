//! Plaintext scan: after importing 10,000 demo citizens, no name, citizen id, phone number
//! or address of the input appears anywhere in the data directory (store, keys, audit log),
//! in file names, in the audit export or in any command output.

use serde_json::Value;
use vault_tests::scan::Scanner;
use vault_tests::{TestVault, text};

use crate::demo_file;

#[test]
fn no_citizen_value_or_id_is_readable_in_the_data_directory() {
    let v = TestVault::initialized();
    let file = v.root().join("citizens.jsonl");
    demo_file(&v, &file, 10_000, 2026);
    let out = v.ctl(&["import", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let input = std::fs::read(&file).unwrap();
    let mut needles: Vec<String> = Vec::new();
    for l in String::from_utf8_lossy(&input).lines() {
        let row: Value = serde_json::from_str(l).unwrap();
        needles.push(row["citizen_id"].as_str().unwrap().to_owned());
        for k in [
            "full_name",
            "father_name",
            "mother_name",
            "spouse_name",
            "phone",
            "permanent_address",
            "current_address",
            "email",
            "bank_account",
        ] {
            if let Some(s) = row["fields"][k].as_str() {
                needles.push(s.to_owned());
            }
        }
    }
    needles.sort();
    needles.dedup();
    assert!(needles.len() > 40_000, "{} needles", needles.len());
    let scanner = Scanner::new(&needles);

    // Positive control: the scanner finds every needle in the input itself.
    let found: std::collections::HashSet<usize> = scanner
        .scan_bytes(&file, &input)
        .into_iter()
        .map(|h| h.needle)
        .collect();
    assert_eq!(
        found.len(),
        scanner.len(),
        "the scanner must find what it looks for"
    );

    let hits = scanner.scan_dir(&v.data());
    let shown: Vec<_> = hits
        .iter()
        .take(5)
        .map(|h| (h.file.clone(), h.offset))
        .collect();
    assert!(
        hits.is_empty(),
        "{} plaintext hits in the data directory, e.g. {shown:?}",
        hits.len()
    );

    // The audit export, the checkpoint and every output of the commands: no hit either.
    let export = v.ctl(&["audit", "export"]);
    assert!(export.status.success());
    assert!(
        export.stdout.len() > 1_000_000,
        "10,000 record.written entries"
    );
    for (what, bytes) in [
        ("audit export", export.stdout.clone()),
        ("import stdout", out.stdout.clone()),
        ("import stderr", out.stderr.clone()),
        ("checkpoint", v.ctl(&["audit", "checkpoint"]).stdout),
    ] {
        let hits = scanner.scan_bytes(std::path::Path::new(what), &bytes);
        assert!(
            hits.is_empty(),
            "{} plaintext hits in the {what}",
            hits.len()
        );
    }

    let mut stack = vec![v.data()];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                !needles.iter().any(|n| name.contains(n.as_str())),
                "file name {name}"
            );
            files += 1;
            if e.path().is_dir() {
                stack.push(e.path());
            }
        }
    }
    assert!(files > 3);
    assert!(text(&out.stdout).contains("10000 created"));
}
