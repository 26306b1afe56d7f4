//! `vaultctl audit`: the log is complete from the first import, verifies online and offline,
//! proofs check out, and tampering is named by index.

use serde_json::Value;
use vault_core::audit::merkle::{self, Hash};
use vault_core::audit::{Checkpoint, LogVerifier};
use vault_tests::{TestVault, text};

use crate::demo_file;

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn unhex(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn export(v: &TestVault) -> Vec<Value> {
    ok(&v.ctl(&["audit", "export"]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_log_records_imports_erasures_and_rotations_and_verifies_offline() {
    let v = TestVault::initialized();
    let file = v.root().join("c.jsonl");
    demo_file(&v, &file, 20, 8);
    ok(&v.ctl(&["import", file.to_str().unwrap()]));
    ok(&v.ctl(&["import", file.to_str().unwrap()])); // unchanged: no new entries
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    ok(&v.ctl(&[
        "--operator",
        "nguyen.van.a",
        "erase",
        "--citizen",
        first["citizen_id"].as_str().unwrap(),
    ]));
    ok(&v.ctl(&["keys", "rotate"]));

    let lines = export(&v);
    let events: Vec<&str> = lines
        .iter()
        .map(|l| l["entry"]["event"].as_str().unwrap())
        .collect();
    assert_eq!(events.len(), 22);
    assert!(events[..20].iter().all(|e| *e == "record.written"));
    assert_eq!(events[20], "record.erased");
    assert_eq!(events[21], "key.rotated");
    assert_eq!(lines[20]["entry"]["actor"]["id"], "nguyen.van.a");
    assert_eq!(lines[0]["entry"]["actor"]["kind"], "operator");
    assert_eq!(
        lines[20]["entry"]["subject"], lines[0]["entry"]["subject"],
        "the erasure is logged under the citizen's pseudonym"
    );

    let verify = ok(&v.ctl(&["audit", "verify"]));
    assert!(verify.contains("22 entries re-hashed"), "{verify}");

    // Offline: export + checkpoint + verifier key.
    let export_path = v.root().join("export.jsonl");
    std::fs::write(&export_path, v.ctl(&["audit", "export"]).stdout).unwrap();
    let cp_path = v.root().join("checkpoint.txt");
    std::fs::write(&cp_path, v.ctl(&["audit", "checkpoint"]).stdout).unwrap();
    let key = ok(&v.ctl(&["audit", "pubkey"])).trim().to_owned();
    let verifier = LogVerifier::parse(&key).unwrap();
    let cp = Checkpoint::verify(&std::fs::read_to_string(&cp_path).unwrap(), &verifier).unwrap();
    assert_eq!(cp.size, 22);
    let offline = |log: &std::path::Path, key: &str| {
        v.ctl(&[
            "audit",
            "verify",
            "--log",
            log.to_str().unwrap(),
            "--checkpoint",
            cp_path.to_str().unwrap(),
            "--key",
            key,
        ])
    };
    assert!(ok(&offline(&export_path, &key)).contains("22 entries"));

    // A tampered export names the entry.
    let tampered = v.root().join("tampered.jsonl");
    let body = std::fs::read_to_string(&export_path).unwrap().replacen(
        "record.erased",
        "record.written",
        1,
    );
    std::fs::write(&tampered, body).unwrap();
    let out = offline(&tampered, &key);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("entry 20:"),
        "{}",
        text(&out.stderr)
    );
    // Another key fails.
    let other = vault_core::audit::LogSigner::from_seed(verifier.name(), &[1; 32])
        .unwrap()
        .verifier()
        .to_string();
    assert!(!offline(&export_path, &other).status.success());

    // An inclusion proof from the CLI verifies against the checkpoint.
    let proof: Value =
        serde_json::from_str(&ok(&v.ctl(&["audit", "proof", "--index", "7"]))).unwrap();
    let hashes: Vec<Hash> = proof["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| unhex(h.as_str().unwrap()))
        .collect();
    merkle::verify_inclusion(
        7,
        22,
        &unhex(proof["leaf_hash"].as_str().unwrap()),
        &hashes,
        &cp.root,
    )
    .unwrap();
    assert_eq!(
        proof["checkpoint"].as_str().unwrap(),
        std::fs::read_to_string(&cp_path).unwrap()
    );
}

#[test]
fn a_tampered_log_fails_verification_naming_the_entry_and_a_truncated_one_refuses_to_open() {
    let v = TestVault::initialized();
    let file = v.root().join("c.jsonl");
    demo_file(&v, &file, 120, 9);
    ok(&v.ctl(&["import", file.to_str().unwrap()]));
    let lines = export(&v);
    assert_eq!(lines.len(), 120);
    // Flip one byte inside entry 3's JSON on disk.
    let entries = v.data().join("audit/entries.log");
    let mut bytes = std::fs::read(&entries).unwrap();
    let needle = serde_json::to_vec(&lines[3]["entry"]).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .unwrap();
    bytes[at + 30] ^= 0x01;
    std::fs::write(&entries, &bytes).unwrap();
    let out = v.ctl(&["audit", "verify"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("audit log corrupt at index 3"), "{err}");

    // Put it back, then cut the last 10 entries (covered by a signed checkpoint).
    bytes[at + 30] ^= 0x01;
    let cut = bytes
        .windows(serde_json::to_vec(&lines[110]["entry"]).unwrap().len())
        .position(|w| w == serde_json::to_vec(&lines[110]["entry"]).unwrap().as_slice())
        .unwrap()
        - 8;
    std::fs::write(&entries, &bytes[..cut]).unwrap();
    let leaves = v.data().join("audit/leaves.idx");
    let idx = std::fs::read(&leaves).unwrap();
    std::fs::write(&leaves, &idx[..110 * 40]).unwrap();
    let out = v.ctl(&["audit", "verify"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("audit log corrupt at index 110") && err.contains("removed"),
        "{err}"
    );
    // Every command that opens the vault refuses, so nothing is released from a damaged log.
    assert!(!v.ctl(&["keys", "rotate"]).status.success());
}
