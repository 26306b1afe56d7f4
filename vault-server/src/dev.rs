//! Dev mode (SPEC §7): on first start, a local CA with server, agency and auditor
//! certificates, the dev OIDC issuer, an initialized vault with 1,000 demo citizens, and a
//! README of curl commands, all under `DATA/dev/`; a restart reuses them. Never in production:
//! the CA key and the root key sit on disk next to the data.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::config::Config;
use crate::oidc::ROLE_CLAIM;

mod issuer;
pub mod oidc;
pub use issuer::{DEV_AUDIENCE, DEV_ISSUER, DevIssuer};

/// Demo citizens loaded on first start.
pub const DEMO_CITIZENS: u64 = 1000;
/// The file that marks a data directory as made by dev mode.
const DEV_MARKER: &str = "MADE-BY-DEV-MODE";

/// The dev auditor's id (certificate SAN `urn:vault:auditor:dev-auditor`).
pub const DEV_AUDITOR: &str = "dev-auditor";

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    o.open(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn write_public(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn rc(e: rcgen::Error) -> String {
    format!("certificate generation: {e}")
}

fn ca_params() -> Result<CertificateParams, String> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Citizen Data Vault (dev)");
    dn.push(DnType::CommonName, "Citizen Data Vault dev CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(p)
}

/// The dev CA: created once, its key kept so later starts can issue missing certificates.
struct DevCa {
    issuer: Issuer<'static, KeyPair>,
}

impl DevCa {
    fn load_or_create(dir: &Path) -> Result<Self, String> {
        let (key_path, pem_path) = (dir.join("ca.key"), dir.join("ca.pem"));
        let key = if key_path.exists() && pem_path.exists() {
            let pem = std::fs::read_to_string(&key_path)
                .map_err(|e| format!("{}: {e}", key_path.display()))?;
            KeyPair::from_pem(&pem).map_err(rc)?
        } else {
            let key = KeyPair::generate().map_err(rc)?;
            let cert = ca_params()?.self_signed(&key).map_err(rc)?;
            write_private(&key_path, key.serialize_pem().as_bytes())?;
            write_public(&pem_path, &cert.pem())?;
            key
        };
        Ok(Self {
            issuer: Issuer::new(ca_params()?, key),
        })
    }

    /// Issues `name.pem`/`name.key` in `dir` unless both exist.
    fn issue(
        &self,
        dir: &Path,
        name: &str,
        cn: &str,
        sans: Vec<SanType>,
        server: bool,
    ) -> Result<(), String> {
        let (pem, key_path) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        if pem.exists() && key_path.exists() {
            return Ok(());
        }
        let key = KeyPair::generate().map_err(rc)?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.subject_alt_names = sans;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&key, &self.issuer).map_err(rc)?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        write_public(&pem, &cert.pem())
    }
}

fn uri(s: &str) -> Result<SanType, String> {
    Ok(SanType::URI(s.try_into().map_err(rc)?))
}

/// Everything dev mode prepared.
#[derive(Debug)]
pub struct DevSetup {
    /// The server configuration dev mode runs with.
    pub config: Config,
    /// `DATA/dev`.
    pub dir: PathBuf,
    /// Whether the vault was created now.
    pub created: bool,
}

/// Prepares (or reuses) everything under `DATA/dev/` and returns the configuration.
pub fn prepare(
    data: &Path,
    listen: &str,
    env: &std::collections::BTreeMap<String, String>,
) -> Result<DevSetup, String> {
    let dir = data.join("dev");
    let marker = dir.join(DEV_MARKER);
    let store = crate::backend::StoreSettings::from_config(&Config::store_from_env(env)?);
    let created = !data.join("store").exists() && !data.join(crate::backend::STORE_FILE).exists();
    // Dev mode adds fake citizens, certificates and a token issuer: only to a vault it made
    // (marked; a dev vault from before the mark has its CA and demo citizens).
    let made_by_dev =
        marker.exists() || (dir.join("ca.pem").exists() && dir.join("citizens.jsonl").exists());
    if !created && !made_by_dev {
        return Err(format!(
            "{}: this vault was not made by `vault-server dev`, which would add 1,000 fake \
             citizens, dev certificates and a token issuer to it; serve it with \
             `vault-server serve --config FILE`, or give dev mode a new directory \
             (`vault-server dev --data DIR`)",
            data.display()
        ));
    }
    std::fs::create_dir_all(dir.join("agencies")).map_err(|e| format!("{}: {e}", dir.display()))?;
    if created {
        crate::ctl::init_vault(data, &store).map_err(|e| e.to_string())?;
    }
    if !marker.exists() {
        std::fs::write(
            &marker,
            "This vault was made by `vault-server dev` (development only).\n",
        )
        .map_err(|e| format!("{}: {e}", marker.display()))?;
    }
    let policy = crate::ctl::policy_of(data).map_err(|e| e.to_string())?;
    let ca = DevCa::load_or_create(&dir)?;
    ca.issue(
        &dir,
        "server",
        "localhost",
        vec![
            SanType::DnsName("localhost".try_into().map_err(rc)?),
            SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])),
        ],
        true,
    )?;
    for a in policy.agencies() {
        ca.issue(
            &dir.join("agencies"),
            &a.id,
            &a.name_en,
            vec![uri(&format!("urn:vault:agency:{}", a.id))?],
            false,
        )?;
    }
    ca.issue(
        &dir,
        "auditor",
        "Dev auditor",
        vec![uri(&format!("urn:vault:auditor:{DEV_AUDITOR}"))?],
        false,
    )?;
    DevIssuer::load_or_create(data)?;
    let citizens = dir.join("citizens.jsonl");
    if !citizens.exists() {
        let tmp = dir.join("citizens.partial.jsonl");
        crate::ctl::write_demo(&tmp, DEMO_CITIZENS, 1).map_err(|e| e.to_string())?;
        crate::ctl::import_file(data, &tmp).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &citizens).map_err(|e| format!("{}: {e}", citizens.display()))?;
    }
    // The configuration as a table, so `VAULT_*` overrides of configuration keys apply as
    // they do to a file (`--data` and `--listen` are the caller's, not the environment's).
    let path = |p: PathBuf| toml::Value::String(p.display().to_string());
    let s = |v: &str| toml::Value::String(v.to_owned());
    let table = |pairs: Vec<(&str, toml::Value)>| {
        toml::Value::Table(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    };
    let toml::Value::Table(config) = table(vec![
        ("listen", s(listen)),
        ("data", path(data.to_owned())),
        (
            "tls",
            table(vec![
                ("cert", path(dir.join("server.pem"))),
                ("key", path(dir.join("server.key"))),
                ("client_ca", path(dir.join("ca.pem"))),
            ]),
        ),
        (
            "oidc",
            table(vec![
                ("issuer", s(DEV_ISSUER)),
                ("audience", s(DEV_AUDIENCE)),
                ("jwks_file", path(DevIssuer::dir(data).join("jwks.json"))),
                ("refresh_seconds", toml::Value::Integer(60)),
                ("role_claim", s(ROLE_CLAIM)),
                ("auditor_role", s("auditor")),
            ]),
        ),
        // A person at a terminal reads dev mode's log: plain lines (VAULT_LOG_FORMAT=json for
        // the JSON a deployment writes).
        ("log", table(vec![("format", s("text"))])),
        // The dev issuer on this server signs the portal in (authorization code + PKCE).
        (
            "portal",
            table(vec![
                ("client_id", s(DEV_AUDIENCE)),
                ("authorization_endpoint", s("/dev-issuer/authorize")),
                ("token_endpoint", s("/dev-issuer/token")),
                ("redirect_uri", s("/portal/callback")),
                ("token_ca", path(dir.join("ca.pem"))),
            ]),
        ),
    ]) else {
        return Err("dev configuration".into());
    };
    let env: std::collections::BTreeMap<String, String> = env
        .iter()
        // Only configuration keys: a newcomer's shell may hold other `VAULT_` variables
        // (another product's `VAULT_ADDR`), which dev mode ignores.
        .filter(|(k, _)| {
            crate::config::is_config_var(k) && !matches!(k.as_str(), "VAULT_LISTEN" | "VAULT_DATA")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let config = Config::from_table(config, "dev mode", &env)?;
    write_public(
        &dir.join("README.txt"),
        &readme(data, &dir, listen, &citizens)?,
    )?;
    Ok(DevSetup {
        config,
        dir,
        created,
    })
}

fn first_citizen(citizens: &Path) -> Result<String, String> {
    let text =
        std::fs::read_to_string(citizens).map_err(|e| format!("{}: {e}", citizens.display()))?;
    text.lines()
        .next()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v.get("citizen_id")?.as_str().map(str::to_owned))
        .ok_or_else(|| format!("{}: no demo citizen", citizens.display()))
}

/// Writes `DATA/dev/README.txt` for a server listening on `listen` (again once the listener
/// is bound, so that `--listen 127.0.0.1:0` gives the port it got).
pub fn write_readme(data: &Path, listen: &str) -> Result<(), String> {
    let dir = data.join("dev");
    write_public(
        &dir.join("README.txt"),
        &readme(data, &dir, listen, &dir.join("citizens.jsonl"))?,
    )
}

fn readme(data: &Path, dir: &Path, listen: &str, citizens: &Path) -> Result<String, String> {
    let d = dir.display();
    let data = data.display();
    let citizen = first_citizen(citizens)?;
    Ok(format!(
        r#"Citizen Data Vault: dev mode files (DEVELOPMENT ONLY: keys sit on disk)

  ca.pem                     CA of the server and every client certificate
  server.pem / server.key    the server (localhost, 127.0.0.1)
  agencies/<id>.pem / .key   one client certificate per agency in policies/agencies.toml
  auditor.pem / auditor.key  auditor certificate (urn:vault:auditor:{DEV_AUDITOR})
  citizens.jsonl             the {DEMO_CITIZENS} demo citizens loaded (synthetic people)
  issuer/                    the dev OIDC issuer (jwks.json; citizen and auditor tokens)

A full walk with curl: paste the lines below, in order, into one shell in the directory you
started `vault-server dev` in (later lines use what earlier ones set). `vaultctl` is built by
its first use below (a release build, like the server's; a minute the first time):

  V=https://{listen}
  A="--cacert {d}/ca.pem --cert {d}/agencies/csgt-cong-an-tphcm.pem --key {d}/agencies/csgt-cong-an-tphcm.key"
  VAULTCTL="cargo run -q --release -p vault-server --bin vaultctl --"

1. The traffic police ask for a grant for a driver-licence renewal (TOKEN is its token):
  curl -s $A $V/v1/purposes
  TOKEN=$(curl -s $A -H 'content-type: application/json' -H 'Idempotency-Key: demo-1' \
    -d '{{"citizen_id":"{citizen}","purpose":"driver_licence_renewal","dossier_id":"HS-2026-0001","fields":["full_name","date_of_birth","driver_licence_number"],"official":{{"id":"can-bo-01","unit":"doi-3"}}}}' \
    $V/v1/grants | sed 's/.*"access_token":"\([^"]*\)".*/\1/')

2. They read the granted fields; the answer names the audit entry that recorded it (I):
  R=$(curl -s $A -H "Authorization: Bearer $TOKEN" "$V/v1/citizens/{citizen}/fields?fields=full_name,date_of_birth")
  echo "$R"; I=$(echo "$R" | sed 's/.*"index":\([0-9]*\).*/\1/')

3. The citizen sees who read what, and checks a receipt: in a browser, open
  https://{listen}/portal, press "Đăng nhập" and sign in with the citizen id {citizen}
  (the dev issuer asks for no password); or over the API:
  CT=$($VAULTCTL dev token --data {data} --citizen {citizen})
  curl -s --cacert {d}/ca.pem -H "Authorization: Bearer $CT" $V/v1/me/accesses
  curl -s --cacert {d}/ca.pem -H "Authorization: Bearer $CT" $V/v1/me/accesses/$I/proof

4. An auditor: in a browser, open https://{listen}/audit-console and sign in with an auditor
  id such as kt-01; or fetch the signed checkpoint and proofs over the API (certificate or
  bearer token):
  U="--cacert {d}/ca.pem --cert {d}/auditor.pem --key {d}/auditor.key"
  curl -s $U $V/v1/audit/checkpoint
  curl -s $U "$V/v1/audit/proof/inclusion?index=$I"
  curl -s $U "$V/v1/audit/proof/consistency?from=1"
  curl -s $U "$V/v1/audit/entries?agency=csgt-cong-an-tphcm"
  $VAULTCTL audit verify --data {data}

5. Consent: purposes with sensitive fields answer 202 pending_consent (G is the grant's id);
  the citizen approves, and the agency's next GET /v1/grants/$G returns the token once:
  B="--cacert {d}/ca.pem --cert {d}/agencies/bhxh-tphcm.pem --key {d}/agencies/bhxh-tphcm.key"
  G=$(curl -s $B -H 'content-type: application/json' -H 'Idempotency-Key: demo-2' \
    -d '{{"citizen_id":"{citizen}","purpose":"social_insurance_lookup","dossier_id":"BH-1","fields":["full_name","annual_income"],"official":{{"id":"can-bo-02"}}}}' \
    $V/v1/grants | sed 's/.*"grant_id":"\([^"]*\)".*/\1/')
  curl -s --cacert {d}/ca.pem -H "Authorization: Bearer $CT" -X POST $V/v1/me/grants/$G/approve
  curl -s $B $V/v1/grants/$G
The approval covers that grant alone; add -H 'content-type: application/json'
-d '{{"remember_days":30}}' to the approval to also keep a standing consent for that agency,
purpose and fields ($V/v1/me/consents lists them).
"#
    ))
}
