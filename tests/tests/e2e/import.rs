//! `vaultctl import`: bad rows by line, strict mode, CSV, idempotence, resume after kill -9.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use serde_json::{Value, json};
use vault_core::CitizenId;
use vault_core::store::{MetaStore, RecordStore};
use vault_tests::{TestVault, text};

use crate::{demo_file, open_vault};

fn line(id: &str, fields: Value) -> Vec<u8> {
    let mut l = serde_json::to_vec(&json!({"citizen_id": id, "fields": fields})).unwrap();
    l.push(b'\n');
    l
}

const A: &str = "079090001111";
const B: &str = "079190002222";

/// A file whose bad rows each exercise one rule; returns it and the secrets it holds.
fn mixed_file(v: &TestVault) -> (std::path::PathBuf, Vec<String>) {
    let long_name = "Trần Thị Rất Dài ".repeat(20);
    let mut f = Vec::new();
    f.extend(line(
        A,
        json!({"full_name": "Nguyễn Văn Một", "annual_income": 100}),
    ));
    f.extend(line("07909000111", json!({"full_name": "Lê Sai Số"})));
    f.extend(line("079090003333", json!({"shoe_size": 42})));
    f.extend(line("079090004444", json!({"annual_income": "nhiều lắm"})));
    f.extend(line("079090005555", json!({"full_name": long_name})));
    f.extend(b"{\"citizen_id\": \"079090006666\", \"fields\": {\"full_name\": \"Ph\xff\xfem\"}}\n");
    f.extend(line(A, json!({"full_name": "Kẻ Mạo Danh"})));
    f.extend(b"{\"citizen_id\": \"079090007777\", \"fields\": {\"full_name\": \n");
    f.extend(line(
        B,
        json!({"full_name": "Võ Thị Hai", "date_of_birth": "1990-12-31"}),
    ));
    f.extend(line("079090008888", json!({"date_of_birth": "1990-13-01"})));
    f.extend(b"{\"citizen_id\": \"079090009999\", \"fields\": {\"full_name\": \"An\"}, \"note\": \"x\"}\n");
    f.extend(line(A, json!({"annual_income": "ba trăm"})));
    let path = v.root().join("mixed.jsonl");
    std::fs::write(&path, f).unwrap();
    let secrets = vec![
        "07909000111".into(),
        "079090003333".into(),
        "079090004444".into(),
        "nhiều lắm".into(),
        "Trần Thị Rất Dài".into(),
        "079090006666".into(),
        "Kẻ Mạo Danh".into(),
        "079090007777".into(),
        "1990-13-01".into(),
        A.into(),
        B.into(),
        "ba trăm".into(),
    ];
    (path, secrets)
}

#[test]
fn each_bad_row_is_reported_by_line_and_changes_nothing_for_that_row() {
    let v = TestVault::initialized();
    let (path, secrets) = mixed_file(&v);
    let shown = path.display().to_string();
    let out = v.ctl(&["import", &shown]);
    assert!(
        !out.status.success(),
        "rejected rows make the exit code non-zero"
    );
    let err = text(&out.stderr);
    for expected in [
        ":2: citizen id must be exactly 12 ASCII digits",
        ":3: unknown field `shoe_size`",
        ":4: invalid value for field `annual_income`: expected an integer",
        ":5: invalid value for field `full_name`: value too long (at most 100 characters)",
        ":6: invalid UTF-8 at byte",
        ":7: duplicate citizen id (first on line 1)",
        ":8: malformed JSON",
        ":10: invalid value for field `date_of_birth`: expected a calendar date",
        ":11: expected {\"citizen_id\"",
        ":12: invalid value for field `annual_income`: expected an integer",
        "10 row(s) rejected",
    ] {
        let needle = if expected.starts_with(':') {
            format!("{shown}{expected}")
        } else {
            expected.to_owned()
        };
        assert!(err.contains(&needle), "missing `{needle}` in:\n{err}");
    }
    for s in &secrets {
        assert!(!err.contains(s.as_str()), "stderr quotes `{s}`:\n{err}");
        assert!(!text(&out.stdout).contains(s.as_str()));
    }
    assert!(text(&out.stdout).contains("2 created, 0 updated, 0 unchanged, 10 rejected"));
    let vault = open_vault(&v.data());
    assert_eq!(vault.store.citizen_count().unwrap(), 2);
    let a = vault.record(&CitizenId::parse(A).unwrap()).unwrap();
    assert_eq!(
        a.fields["full_name"],
        json!("Nguyễn Văn Một"),
        "the duplicate did not overwrite"
    );
    assert_eq!(a.fields["annual_income"], json!(100));
    assert_eq!(a.version, 1);
}

#[test]
fn a_bad_row_for_an_existing_citizen_leaves_their_record_unchanged() {
    let v = TestVault::initialized();
    let good = v.root().join("good.jsonl");
    std::fs::write(
        &good,
        line(
            A,
            json!({"full_name": "Nguyễn Văn Một", "phone": "0903123456"}),
        ),
    )
    .unwrap();
    assert!(v.ctl(&["import", good.to_str().unwrap()]).status.success());
    let bad = v.root().join("bad.jsonl");
    std::fs::write(
        &bad,
        line(
            A,
            json!({"full_name": "Đổi Tên", "phone": "0903 123 456 789 000"}),
        ),
    )
    .unwrap();
    let out = v.ctl(&["import", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("bad.jsonl:1: invalid value for field `phone`"));
    let vault = open_vault(&v.data());
    let a = vault.record(&CitizenId::parse(A).unwrap()).unwrap();
    assert_eq!(
        (a.version, a.fields["full_name"].clone()),
        (1, json!("Nguyễn Văn Một"))
    );
}

#[test]
fn strict_import_stops_at_the_first_bad_row_and_writes_nothing() {
    let v = TestVault::initialized();
    let (path, _) = mixed_file(&v);
    let out = v.ctl(&["import", "--strict", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:2: citizen id must be exactly 12 ASCII digits (--strict: nothing was imported)",
            path.display()
        )),
        "{err}"
    );
    assert!(!err.contains(":3:"), "stops at the first bad row");
    let vault = open_vault(&v.data());
    assert_eq!(vault.store.citizen_count().unwrap(), 0);
}

#[test]
fn strict_import_of_a_clean_file_imports_it() {
    let v = TestVault::initialized();
    let file = v.root().join("c.jsonl");
    demo_file(&v, &file, 50, 9);
    let out = v.ctl(&["import", "--strict", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("all 50 rows are valid"));
    assert!(text(&out.stdout).contains("50 created"));
}

#[test]
fn importing_the_same_file_twice_changes_nothing() {
    let v = TestVault::initialized();
    let file = v.root().join("c.jsonl");
    demo_file(&v, &file, 500, 5);
    assert!(v.ctl(&["import", file.to_str().unwrap()]).status.success());
    let snapshot = |v: &TestVault| -> Vec<(vault_core::BlindId, u64, Vec<u8>)> {
        let vault = open_vault(&v.data());
        vault
            .store
            .citizens_after(None, 10_000)
            .unwrap()
            .into_iter()
            .map(|(b, r)| (b, r.record_version, r.wrapped_dek))
            .collect()
    };
    let before = snapshot(&v);
    let out = v.ctl(&["import", file.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("0 created, 0 updated, 500 unchanged, 0 rejected"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(snapshot(&v), before);
}

#[test]
fn csv_rows_are_typed_by_the_catalog_and_bad_rows_named_by_line() {
    let v = TestVault::initialized();
    let path = v.root().join("people.csv");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(
        f,
        "citizen_id,full_name,date_of_birth,annual_income,dependents,sex"
    )
    .unwrap();
    writeln!(
        f,
        "{A},\"Nguyễn Văn Một, con\",1980-01-02,250000000,Nguyễn An (2010);Nguyễn Bình (2012),Nam"
    )
    .unwrap();
    writeln!(f, "{B},Võ Thị Hai,1991-05-06,không biết,,Nữ").unwrap();
    writeln!(f, "079090003333,Lê Ba,1970-01-01,1").unwrap();
    writeln!(f, "079090004444,Lê Bốn,,,,").unwrap();
    drop(f);
    let out = v.ctl(&["import", path.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(
        err.contains("people.csv:3: invalid value for field `annual_income`: expected an integer"),
        "{err}"
    );
    assert!(
        err.contains("people.csv:4: row has 4 columns, the header has 6"),
        "{err}"
    );
    assert!(!err.contains("không biết"));
    assert!(
        text(&out.stdout).contains("2 created"),
        "{}",
        text(&out.stdout)
    );
    let vault = open_vault(&v.data());
    let a = vault.record(&CitizenId::parse(A).unwrap()).unwrap();
    assert_eq!(a.fields["full_name"], json!("Nguyễn Văn Một, con"));
    assert_eq!(a.fields["annual_income"], json!(250_000_000));
    assert_eq!(
        a.fields["dependents"],
        json!(["Nguyễn An (2010)", "Nguyễn Bình (2012)"])
    );
    let four = vault
        .record(&CitizenId::parse("079090004444").unwrap())
        .unwrap();
    assert_eq!(
        four.fields.keys().collect::<Vec<_>>(),
        vec!["full_name"],
        "empty cells are absent fields"
    );

    drop(vault); // release the store's lock for the next vaultctl run
    let bad_header = v.root().join("bad.csv");
    std::fs::write(
        &bad_header,
        "citizen_id,full_name,shoe_size\n079090005555,X,42\n",
    )
    .unwrap();
    let out = v.ctl(&["import", bad_header.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("bad.csv:1: unknown field `shoe_size` in the header row"));
}

#[test]
fn an_unknown_file_format_is_refused() {
    let v = TestVault::initialized();
    let path = v.root().join("people.xml");
    std::fs::write(&path, "<people/>").unwrap();
    let out = v.ctl(&["import", path.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("must end in .jsonl or .csv"));
}

/// `vaultctl import FILE` running, its stderr piped.
fn spawn_import(v: &TestVault, file: &std::path::Path) -> std::process::Child {
    v.command(&["import", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn an_import_killed_midway_resumes_and_completes() {
    let v = TestVault::initialized();
    let file = v.root().join("many.jsonl");
    demo_file(&v, &file, 30_000, 11);
    let mut child = spawn_import(&v, &file);
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("rows committed"), "{first}");
    child.kill().unwrap(); // SIGKILL: no cleanup, no final flush
    child.wait().unwrap();

    // Audit before act: after the kill, every stored citizen has its durable record.written
    // entry, and the log verifies.
    {
        let vault = open_vault(&v.data());
        let stored = vault.store.citizen_count().unwrap();
        let written = (0..vault.audit().size())
            .filter(|&i| {
                let e: Value = serde_json::from_slice(&vault.audit().entry(i).unwrap()).unwrap();
                e["event"] == "record.written"
            })
            .count() as u64;
        assert!(
            stored > 0 && written >= stored,
            "{stored} stored, {written} audited"
        );
        vault.audit().verify_all().unwrap();
    }

    let out = v.ctl(&["import", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(
        report.contains("resuming an interrupted import after line"),
        "{report}"
    );
    assert!(
        report.contains("already imported before the interruption"),
        "{report}"
    );

    let vault = open_vault(&v.data());
    assert_eq!(vault.store.citizen_count().unwrap(), 30_000);
    assert_eq!(vault.store.import_checkpoint(&[0; 32]).unwrap(), None);
    for (i, l) in std::fs::read_to_string(&file).unwrap().lines().enumerate() {
        if i % 97 != 0 {
            continue;
        }
        let row: Value = serde_json::from_str(l).unwrap();
        let id = CitizenId::parse(row["citizen_id"].as_str().unwrap()).unwrap();
        let rec = vault.record(&id).unwrap();
        assert_eq!(
            Value::Object(rec.fields.into_iter().collect()),
            row["fields"]
        );
        assert_eq!(
            rec.version, 1,
            "a resumed import never rewrites a committed row"
        );
    }
    // A third run finds everything in place.
    drop(vault);
    let out = v.ctl(&["import", file.to_str().unwrap()]);
    assert!(
        text(&out.stdout).contains("0 created, 0 updated, 30000 unchanged"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn an_import_that_meets_a_damaged_record_stops_with_an_error_instead_of_hanging() {
    use std::os::unix::fs::FileExt;
    use std::time::{Duration, Instant};
    let v = TestVault::initialized();
    let file = v.root().join("many.jsonl");
    demo_file(&v, &file, 12_000, 5);
    let out = v.ctl(&["import", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Damage the frames of the first citizens written: importing the file again reads them
    // (to find unchanged values) in its first batch, and sealing that batch fails while the
    // reader is still filling the pipeline's channels.
    let records = v.data().join("store").join("records.dat");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&records)
        .unwrap()
        .write_all_at(&[0xA5; 64 * 1024], 4096)
        .unwrap();
    let mut child = spawn_import(&v, &file);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the import hung after a sealing error");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("store corrupt") || stderr.contains("failed authentication"),
        "{stderr}"
    );
    // The message names no citizen.
    for l in std::fs::read_to_string(&file).unwrap().lines().take(200) {
        let row: Value = serde_json::from_str(l).unwrap();
        assert!(!stderr.contains(row["citizen_id"].as_str().unwrap()));
    }
}

#[test]
fn an_unclosed_quote_in_a_csv_row_is_named_by_its_line_and_the_rows_after_it_are_kept() {
    let v = TestVault::initialized();
    let path = v.root().join("quote.csv");
    std::fs::write(
        &path,
        format!(
            "citizen_id,full_name,annual_income\n\
             {A},Một,1\n\
             079090002222,\"Hai không đóng,2\n\
             {B},Ba,3\n\
             079090004444,Bốn,4\n\
             079090005555,\"Năm, đóng\",5\n"
        ),
    )
    .unwrap();
    let out = v.ctl(&["import", path.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(
        err.contains("quote.csv:3: a quoted value is not closed on this line"),
        "{err}"
    );
    assert!(
        !err.contains("quote.csv:4") && !err.contains("quote.csv:5"),
        "{err}"
    );
    assert!(!err.contains("Hai không đóng"), "no value is quoted: {err}");
    assert!(
        text(&out.stdout).contains("4 created, 0 updated, 0 unchanged, 1 rejected"),
        "{}",
        text(&out.stdout)
    );
    let vault = open_vault(&v.data());
    let four = vault
        .record(&CitizenId::parse("079090004444").unwrap())
        .unwrap();
    assert_eq!(four.fields["full_name"], json!("Bốn"));
    let five = vault
        .record(&CitizenId::parse("079090005555").unwrap())
        .unwrap();
    assert_eq!(five.fields["full_name"], json!("Năm, đóng"));
    assert!(
        vault
            .record(&CitizenId::parse("079090002222").unwrap())
            .is_err()
    );
}
