//! `vaultctl` init, keys, erase and policy commands.

use std::os::unix::fs::PermissionsExt;

use vault_core::{CitizenId, VaultError};
use vault_tests::{TestVault, policies_dir, text};

use crate::{demo_file, open_vault};

#[test]
fn init_creates_a_0600_root_key_and_refuses_to_overwrite() {
    let v = TestVault::initialized();
    let key = v.data().join("keys/root.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let before = std::fs::read(&key).unwrap();
    let again = v.ctl(&["init"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(std::fs::read(&key).unwrap(), before, "root key untouched");
}

#[test]
fn init_with_an_external_root_key_writes_none_of_its_own() {
    let v = TestVault::empty();
    let key = v.root().join("external.key");
    vault_core::keyring::FileRootKey::generate(&key).unwrap();
    let key_arg = key.to_str().unwrap();
    let out = v.ctl(&["--root-key", key_arg, "init"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!v.data().join("keys/root.key").exists());
    let ok = v.ctl(&["--root-key", key_arg, "keys", "rotate"]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
}

#[test]
fn a_root_key_readable_by_others_is_refused_with_a_clear_message() {
    let v = TestVault::initialized();
    let key = v.data().join("keys/root.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = v.ctl(&["keys", "rotate"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("mode 644") && err.contains("0600"), "{err}");
}

#[test]
fn a_wrong_root_key_is_a_clear_error_and_leaves_the_vault_usable() {
    let v = TestVault::initialized();
    let other = v.root().join("other.key");
    vault_core::keyring::FileRootKey::generate(&other).unwrap();
    let file = v.root().join("c.jsonl");
    demo_file(&v, &file, 5, 1);
    let out = v.ctl(&[
        "--root-key",
        other.to_str().unwrap(),
        "import",
        file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("root key does not match"),
        "{}",
        text(&out.stderr)
    );
    let ok = v.ctl(&["import", file.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("5 created"));
}

#[test]
fn commands_on_a_missing_vault_say_so() {
    let v = TestVault::empty();
    let out = v.ctl(&["keys", "rotate"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no vault here"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn keys_rotate_rewraps_every_dek_and_every_record_reads_back() {
    let v = TestVault::initialized();
    let file = v.root().join("c.jsonl");
    demo_file(&v, &file, 300, 3);
    assert!(v.ctl(&["import", file.to_str().unwrap()]).status.success());
    let out = v.ctl(&["keys", "rotate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let msg = text(&out.stdout);
    assert!(
        msg.contains("v1 -> v2") && msg.contains("300 data keys re-wrapped"),
        "{msg}"
    );
    let vault = open_vault(&v.data());
    let ring = vault_core::store::MetaStore::keyring(&vault.store)
        .unwrap()
        .unwrap();
    assert_eq!(ring.keks.keys().copied().collect::<Vec<_>>(), vec![2]);
    assert_eq!(ring.min_decryption_version, 2);
    for line in std::fs::read_to_string(&file).unwrap().lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = CitizenId::parse(row["citizen_id"].as_str().unwrap()).unwrap();
        let rec = vault.record(&id).unwrap();
        assert_eq!(
            serde_json::Value::Object(rec.fields.into_iter().collect()),
            row["fields"]
        );
    }
}

#[test]
fn erase_destroys_the_citizen_and_a_reimport_starts_fresh() {
    let v = TestVault::initialized();
    let file = v.root().join("c.jsonl");
    demo_file(&v, &file, 20, 4);
    assert!(v.ctl(&["import", file.to_str().unwrap()]).status.success());
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let id_text = first["citizen_id"].as_str().unwrap();
    let blind_before = {
        let vault = open_vault(&v.data());
        let id = CitizenId::parse(id_text).unwrap();
        let rec = vault_core::store::RecordStore::citizen(&vault.store, &vault.blind(&id))
            .unwrap()
            .unwrap();
        rec.wrapped_dek
    };
    let out = v.ctl(&["erase", "--citizen", id_text]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again = v.ctl(&["erase", "--citizen", id_text]);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("citizen not found"));
    assert!(
        !text(&again.stderr).contains(id_text),
        "the id is never echoed"
    );
    {
        let vault = open_vault(&v.data());
        let id = CitizenId::parse(id_text).unwrap();
        assert!(matches!(
            vault.record(&id),
            Err(VaultError::CitizenNotFound)
        ));
        assert!(
            vault_core::store::RecordStore::citizen(&vault.store, &vault.blind(&id))
                .unwrap()
                .is_none()
        );
        assert_eq!(
            vault_core::store::RecordStore::citizen_count(&vault.store).unwrap(),
            19
        );
    }
    let out = v.ctl(&["import", file.to_str().unwrap()]);
    assert!(
        text(&out.stdout).contains("1 created, 0 updated, 19 unchanged"),
        "{}",
        text(&out.stdout)
    );
    let vault = open_vault(&v.data());
    let id = CitizenId::parse(id_text).unwrap();
    let rec = vault_core::store::RecordStore::citizen(&vault.store, &vault.blind(&id))
        .unwrap()
        .unwrap();
    assert_ne!(rec.wrapped_dek, blind_before, "a fresh DEK");
    assert_eq!(rec.record_version, 1);
}

#[test]
fn erase_rejects_a_malformed_id_without_echoing_it() {
    let v = TestVault::initialized();
    let out = v.ctl(&["erase", "--citizen", "07920300123X"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("12 ASCII digits") && !err.contains("07920300123X"),
        "{err}"
    );
}

#[test]
fn policy_check_passes_on_the_repository_and_names_file_and_line_on_a_broken_copy() {
    let v = TestVault::empty();
    let out = v.ctl(&["policy", "check", policies_dir().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let report = text(&out.stdout);
    assert!(
        report.contains("0 failed") && report.contains("refused as expected"),
        "{report}"
    );

    let copy = v.root().join("policies");
    vault_tests::bench::copy_dir(&policies_dir(), &copy).unwrap();
    let fields = copy.join("fields.toml");
    let broken = std::fs::read_to_string(&fields).unwrap().replacen(
        "sensitivity = \"sensitive\"",
        "sensitivity = \"basic\"",
        1,
    );
    std::fs::write(&fields, broken).unwrap();
    let out = v.ctl(&["policy", "check", copy.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("fields.toml:") && err.contains("Decree 356/2025"),
        "{err}"
    );
}

#[test]
fn token_signing_keys_rotate_and_retire_from_the_cli() {
    let v = TestVault::initialized();
    let out = v.ctl(&["keys", "rotate-token"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("token signing key v2 is current"));
    let out = v.ctl(&["keys", "retire-old-token-keys"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("1 token signing key(s) retired"));
    let export = v.ctl(&["audit", "export"]);
    let log = text(&export.stdout);
    assert!(
        log.contains("\"code\":\"token_v2\"") && log.contains("\"code\":\"token_retired_v2\""),
        "{log}"
    );
}

#[test]
fn the_vault_keeps_its_policy_set_so_commands_work_from_any_directory() {
    let v = TestVault::initialized();
    assert!(v.data().join("policies/fields.toml").exists());
    assert!(
        v.data()
            .join("policies/purposes/emergency_care.toml")
            .exists()
    );
    let file = v.root().join("c.jsonl");
    demo_file(&v, &file, 10, 12);
    let out = std::process::Command::new(vault_tests::binary("vaultctl"))
        .current_dir(v.root())
        .env_remove("VAULT_POLICIES")
        .args([
            "--data",
            v.data().to_str().unwrap(),
            "import",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("10 created"));
}

#[test]
fn debug_builds_take_a_test_root_key_from_the_environment() {
    let v = TestVault::initialized();
    let key_file = v.data().join("keys/root.key");
    let hex = std::fs::read_to_string(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let without = v.ctl(&["keys", "rotate"]);
    assert!(!without.status.success(), "no key file, no env: refused");
    let with = v
        .command(&["keys", "rotate"])
        .env("VAULT_TEST_ROOT_KEY", hex.trim())
        .output()
        .unwrap();
    assert!(with.status.success(), "{}", text(&with.stderr));
}
