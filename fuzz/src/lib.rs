//! Fuzz harnesses, one per target: each takes arbitrary bytes, must never panic, and asserts
//! the property its target owns. The cargo-fuzz targets in `fuzz_targets/` call them; the
//! workspace's corpus replay (vault-tests, e2e `fuzz_corpus`) includes this file and runs
//! every committed input on stable, so a regression fails CI without a nightly build.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde_json::{Value, json};
use vault_core::audit::note::{Checkpoint, LogSigner, LogVerifier};
use vault_core::audit::{Actor, SafeId, SegmentLogAt};
use vault_core::crypto::{FieldSealer, unwrap_dek};
use vault_core::keyring::{DEFAULT_LOG_ORIGIN, InMemoryRootKey};
use vault_core::policy::PolicySet;
use vault_core::secret::{DataKey, Kek};
use vault_core::store::SledStore;
use vault_core::token::{GrantClaims, TokenKey, TokenKeys, UnverifiedToken};
use vault_core::vault::AgencyCaller;
use vault_core::{BlindId, CitizenId, FieldName, RecordWrite, Timestamp, Vault};
use vault_server::problem::ApiError;
use zeroize::Zeroizing;

/// Every target by name, for the corpus replay.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("token", token),
    ("checkpoint", checkpoint),
    ("envelope", envelope),
    ("policy", policy),
    ("import_row", import_row),
    ("request_json", request_json),
];

/// The moment every harness runs at.
const NOW: Timestamp = Timestamp::from_millis(1_790_000_000_000);
/// The certificate thumbprint tokens are bound to.
const THUMB: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
/// The separator of the policy target's files.
pub const POLICY_SEPARATOR: u8 = 0;

fn policies_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies"))
}

fn token_keys() -> &'static TokenKeys {
    static KEYS: OnceLock<TokenKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = TokenKey::from_seed(&Zeroizing::new([7u8; 32]))
            .unwrap_or_else(|e| panic!("token key: {e}"));
        TokenKeys::new(key, &[], DEFAULT_LOG_ORIGIN)
    })
}

/// Token parsing and verification: arbitrary text never verifies (nor panics); a token the
/// vault signed verifies with its claims intact, and changing any one character of it makes
/// it fail.
pub fn token(data: &[u8]) {
    let keys = token_keys();
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(t) = UnverifiedToken::parse(s)
    {
        let _ = t.verify(keys, THUMB, NOW);
    }
    let now = NOW.as_secs();
    let claims = GrantClaims {
        agency: "ubnd-phuong-sai-gon".into(),
        official: "cb-001".into(),
        iat: now,
        nbf: now,
        exp: now + 600,
        jti: "t-1".into(),
        grant_id: "g-1".into(),
        cert_thumbprint: THUMB.into(),
        identifier: "00".repeat(32),
        datatypes: vec!["full_name".into()],
        purpose: "birth_registration".into(),
        legal_basis: "law".into(),
        dossier_id: String::from_utf8_lossy(data)
            .chars()
            .take(64)
            .collect::<String>()
            .into(),
    };
    let raw = keys
        .sign(&claims)
        .unwrap_or_else(|e| panic!("signing failed: {e}"));
    let good = UnverifiedToken::parse(&raw)
        .and_then(|t| t.verify(keys, THUMB, NOW))
        .unwrap_or_else(|e| panic!("a vault-signed token must verify: {e:?}"));
    assert_eq!(good.claims(), &claims);
    if let [a, b, c, ..] = data {
        let mut bytes = raw.into_bytes();
        let at = usize::from(u16::from_le_bytes([*a, *b])) % bytes.len();
        let replacement = b'!' + c % 94;
        if bytes.get(at) != Some(&replacement) {
            bytes[at] = replacement;
            let changed = String::from_utf8(bytes).unwrap_or_default();
            let r = UnverifiedToken::parse(&changed).and_then(|t| t.verify(keys, THUMB, NOW));
            assert!(r.is_err(), "a token with one character changed verified");
        }
    }
}

fn log_signer() -> &'static LogSigner {
    static SIGNER: OnceLock<LogSigner> = OnceLock::new();
    SIGNER.get_or_init(|| {
        LogSigner::from_seed(DEFAULT_LOG_ORIGIN, &[9u8; 32])
            .unwrap_or_else(|e| panic!("signer: {e:?}"))
    })
}

/// Checkpoint and signed-note parsing: arbitrary text never panics and never verifies
/// under the log key; a checkpoint signed by the log round-trips exactly.
pub fn checkpoint(data: &[u8]) {
    let signer = log_signer();
    let verifier = signer.verifier();
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Checkpoint::parse(s);
        let _ = LogVerifier::parse(s);
        if let Ok(body) = verifier.verify_note(s) {
            // Only a note the log signed can verify: its body is a checkpoint we made.
            assert!(
                Checkpoint::parse(body).is_ok(),
                "a verified note that is no checkpoint"
            );
        }
        let _ = Checkpoint::verify(s, &verifier);
    }
    let mut root = [0u8; 32];
    for (i, b) in data.iter().enumerate() {
        root[i % 32] ^= b;
    }
    let size = data
        .iter()
        .take(8)
        .fold(0u64, |n, b| (n << 8) | u64::from(*b));
    let cp = Checkpoint {
        origin: DEFAULT_LOG_ORIGIN.into(),
        size,
        root,
    };
    let note = cp.sign(signer).unwrap_or_else(|e| panic!("signing: {e:?}"));
    let back = Checkpoint::verify(&note, &verifier)
        .unwrap_or_else(|e| panic!("a signed checkpoint must verify: {e:?}"));
    assert_eq!(back, cp);
}

/// The ciphertext envelopes (field and wrapped DEK): arbitrary bytes never open; sealing
/// any value opens to exactly that value, and only as its own field and version.
pub fn envelope(data: &[u8]) {
    let blind = BlindId::from_bytes([3u8; 32]);
    let dek = DataKey::from_bytes([4u8; 32]);
    let kek = Kek::from_bytes([5u8; 32]);
    let sealer = FieldSealer::new(&dek, blind, 1);
    let name = FieldName::parse("full_name").unwrap_or_else(|| panic!("field name"));
    let other = FieldName::parse("phone").unwrap_or_else(|| panic!("field name"));
    assert!(sealer.open(&name, 1, data).is_err(), "random bytes opened");
    assert!(
        unwrap_dek(&kek, &blind, 1, data).is_err(),
        "random bytes unwrapped"
    );
    let sealed = sealer
        .seal(&name, 7, data)
        .unwrap_or_else(|e| panic!("seal: {e}"));
    let opened = sealer
        .open(&name, 7, &sealed)
        .unwrap_or_else(|e| panic!("open: {e}"));
    assert_eq!(opened.expose(), data);
    assert!(
        sealer.open(&other, 7, &sealed).is_err(),
        "opened as another field"
    );
    assert!(
        sealer.open(&name, 6, &sealed).is_err(),
        "opened as another version"
    );
    let mut flipped = sealed;
    if let Some(b) = data.first() {
        let at = usize::from(*b) % flipped.len();
        flipped[at] ^= 1;
        assert!(
            sealer.open(&name, 7, &flipped).is_err(),
            "a changed envelope opened"
        );
    }
}

/// Policy TOML loading: the input is `fields.toml`, `agencies.toml` and purpose files
/// separated by NUL bytes. Loading never panics, an error names a file and a line within
/// it, and a set that loads hashes the same when loaded again.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split(char::from(POLICY_SEPARATOR));
    let fields = parts.next().unwrap_or_default();
    let agencies = parts.next().unwrap_or_default();
    let stems: Vec<String> = (0..).map(|i| format!("p{i}")).take(16).collect();
    let purposes: Vec<(&str, &str)> = stems.iter().map(String::as_str).zip(parts).collect();
    match PolicySet::from_texts(fields, agencies, &purposes, None) {
        Ok(set) => {
            let again = PolicySet::from_texts(fields, agencies, &purposes, None)
                .unwrap_or_else(|e| panic!("loaded once, then not: {e}"));
            assert_eq!(set.sha256(), again.sha256());
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(!shown.is_empty());
            let lines = match e.file.as_str() {
                "fields.toml" => fields.lines().count(),
                "agencies.toml" => agencies.lines().count(),
                _ => purposes
                    .iter()
                    .map(|(_, t)| t.lines().count())
                    .max()
                    .unwrap_or(0),
            };
            assert!(
                e.line <= lines.max(1) + 1,
                "error at line {} of a {lines}-line file",
                e.line
            );
        }
    }
}

fn policy_set() -> &'static Arc<PolicySet> {
    static SET: OnceLock<Arc<PolicySet>> = OnceLock::new();
    SET.get_or_init(|| {
        Arc::new(PolicySet::load_dir(&policies_dir()).unwrap_or_else(|e| panic!("{e}")))
    })
}

/// Whether `s` is public policy text a message may name: a field, purpose or agency id, or
/// an allowed value of an enum field (a refusal lists them).
fn is_policy_text(s: &str) -> bool {
    let p = policy_set();
    p.field(s).is_some()
        || p.purpose(s).is_some()
        || p.agency(s).is_some()
        || p.fields().any(|f| {
            matches!(&f.ty, vault_core::policy::FieldType::Enum(values) if values.iter().any(|v| v == s))
        })
}

/// Every string of at least 8 characters in a JSON value (values a message must not echo).
fn long_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.chars().count() >= 8 => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| long_strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| long_strings(x, out)),
        _ => {}
    }
}

/// Whether the message `run` gives for `data` quotes `v` from it: the message contains `v`,
/// and with `v` replaced in the input by a marker, the new message contains the marker (so
/// `v` was not fixed text of the message that the input happened to hold as well).
pub fn quotes(data: &[u8], v: &str, run: &dyn Fn(&[u8]) -> String) -> bool {
    if !run(data).contains(v) {
        return false;
    }
    let marker: String = "qzxj"
        .chars()
        .cycle()
        .take(v.chars().count().max(4))
        .collect();
    let changed = String::from_utf8_lossy(data).replace(v, &marker);
    run(changed.as_bytes()).contains(&marker)
}

/// The long strings of a JSON input and the field names it gives: the keys of a `fields`
/// object (a record), or the strings of a `fields` array (a grant request).
fn strings_and_names(data: &[u8]) -> (Vec<String>, Vec<String>) {
    let mut values = Vec::new();
    let mut names: Vec<String> = Vec::new();
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        long_strings(&v, &mut values);
        match v.get("fields") {
            Some(Value::Object(fields)) => names.extend(fields.keys().cloned()),
            Some(Value::Array(fields)) => {
                names.extend(fields.iter().filter_map(Value::as_str).map(str::to_owned));
            }
            _ => {}
        }
    }
    (values, names)
}

/// Whether `v` is public or echoed by design: catalog text, or part of a name-shaped field
/// name of the input without a citizen-id-like number (unknown names are named).
fn may_show(v: &str, names: &[String]) -> bool {
    is_policy_text(v)
        || names
            .iter()
            .any(|n| n.contains(v) && !vault_core::id::has_long_digit_run(n))
}

/// Import row parsing: never panics, and a refused row's message never quotes a value or
/// citizen id of the row.
pub fn import_row(data: &[u8]) {
    let run = |d: &[u8]| {
        vault_server::ctl::check_jsonl_row(policy_set(), d)
            .err()
            .unwrap_or_default()
    };
    let message = run(data);
    if message.is_empty() {
        return;
    }
    let (values, names) = strings_and_names(data);
    for v in values {
        assert!(
            may_show(&v, &names) || !quotes(data, &v, &run),
            "the message quotes the row: {message}"
        );
    }
}

/// A vault on a temporary directory with two citizens in ward 26740, for the request
/// target (on /dev/shm where there is one: every grant decision appends a durable entry).
fn vault() -> &'static Vault<SledStore> {
    static VAULT: OnceLock<Vault<SledStore>> = OnceLock::new();
    VAULT.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        // Statics are never dropped, so each run leaves its directory: remove those of
        // processes that are gone.
        for e in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("vault-fuzz-")
                && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let dir = base.join(format!("vault-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = SledStore::open(&dir.join("store")).unwrap_or_else(|e| panic!("store: {e}"));
        let v = Vault::init(
            store,
            &InMemoryRootKey::new([1u8; 32]),
            Arc::clone(policy_set()),
            DEFAULT_LOG_ORIGIN,
            &SegmentLogAt(dir.join("audit")),
        )
        .unwrap_or_else(|e| panic!("vault: {e}"));
        let writes: Vec<RecordWrite> = CITIZENS
            .iter()
            .map(|id| {
                let fields = json!({"full_name": "Nguyễn Thị Fuzz", "date_of_birth": "1990-01-02",
                               "residence_ward": "phuong-sai-gon"});
                let map = fields.as_object().cloned().unwrap_or_default();
                v.validate_write(CitizenId::parse(id).unwrap_or_else(|e| panic!("{e}")), map)
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        let op = Actor::operator(SafeId::parse("fuzz").unwrap_or_else(|e| panic!("{e}")));
        v.write_records(&writes, &op, NOW)
            .unwrap_or_else(|e| panic!("{e}"));
        v
    })
}

/// The citizens the request target's vault holds.
pub const CITIZENS: [&str; 2] = ["079090000001", "079090000002"];

/// Request JSON bodies, parsed as the handlers parse them and carried into the core (grant
/// request, record write validation, verification code): never a panic, and no problem
/// body quotes a value or citizen id of the request.
pub fn request_json(data: &[u8]) {
    let v = vault();
    let caller = AgencyCaller {
        agency: "ubnd-phuong-sai-gon".into(),
        cert_thumbprint: THUMB.into(),
    };
    let citizen = CitizenId::parse(CITIZENS[0]).unwrap_or_else(|e| panic!("{e}"));
    let run = |d: &[u8]| problem_bodies(v, &caller, &citizen, d);
    let bodies = run(data);
    let (values, names) = strings_and_names(data);
    for s in &values {
        assert!(
            may_show(s, &names) || !quotes(data, s, &run),
            "a problem quotes the request: {bodies}"
        );
    }
}

/// Every problem body the request JSON routes give for `data`, joined.
fn problem_bodies(
    v: &Vault<SledStore>,
    caller: &AgencyCaller,
    citizen: &CitizenId,
    data: &[u8],
) -> String {
    let mut problems: Vec<ApiError> = Vec::new();
    match vault_server::routes::agency::grant_request(data) {
        Ok(req) => {
            if let Err(e) = v.request_grant(caller, &req, None, NOW) {
                problems.push(ApiError::Vault(e));
            }
        }
        Err(e) => problems.push(e),
    }
    match vault_server::routes::agency::write_request(data) {
        Ok((fields, _source)) => {
            if let Err(e) = v.validate_write(citizen.clone(), fields) {
                problems.push(ApiError::Vault(e));
            }
        }
        Err(e) => problems.push(e),
    }
    match vault_server::routes::citizen::verification_code(data) {
        Ok(code) => {
            if let Err(e) = v.verify_code(citizen, &code, NOW) {
                problems.push(ApiError::Vault(e));
            }
        }
        Err(e) => problems.push(e),
    }
    problems
        .iter()
        .map(|p| p.body().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}
