//! The root key in a PKCS#11 token, named by an RFC 7512 URI
//! (`pkcs11:token=vault;object=vault-root?module-path=/usr/lib/softhsm/libsofthsm2.so`): an
//! AES-256 key object that is sensitive and never extractable wraps and unwraps the keyring's
//! secrets inside the token (AES-GCM, the label as associated data). SoftHSM2 in the tests,
//! an HSM in production. `vaultctl init` creates the key object when the token has none.

use std::path::PathBuf;
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use vault_core::VaultError;
use vault_core::keyring::{Root, RootKeySource};
use zeroize::Zeroizing;

/// Envelope of a secret wrapped by a token: format, algorithm, 12-byte IV, ciphertext and tag.
const FORMAT_TOKEN: u8 = 0x05;
const ALG_AES256GCM: u8 = 0x01;
const IV_LEN: usize = 12;
const TAG_BITS: u64 = 128;

/// A parsed `pkcs11:` URI: the token and object labels and the module to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// The token's label (`token=`).
    pub token: String,
    /// The key object's label (`object=`).
    pub object: String,
    /// The PKCS#11 module (`module-path=`), if the URI names one.
    pub module: Option<PathBuf>,
}

fn unpercent(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in `{s}`"))?;
            out.push(h);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` is not UTF-8"))
}

impl Pkcs11Uri {
    /// Whether `s` is a PKCS#11 URI.
    pub fn is_uri(s: &str) -> bool {
        s.starts_with("pkcs11:")
    }

    /// Parses `pkcs11:token=…;object=…[?module-path=…]` (other attributes are refused, so a
    /// typing mistake is not ignored).
    pub fn parse(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix("pkcs11:")
            .ok_or_else(|| "a PKCS#11 URI starts with `pkcs11:`".to_owned())?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (mut token, mut object, mut module) = (None, None, None);
        for part in path.split(';').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not name=value"))?;
            match k {
                "token" => token = Some(unpercent(v)?),
                "object" => object = Some(unpercent(v)?),
                "type" if v == "secret-key" => {}
                other => return Err(format!("unsupported PKCS#11 URI attribute `{other}`")),
            }
        }
        for part in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not name=value"))?;
            match k {
                "module-path" => module = Some(PathBuf::from(unpercent(v)?)),
                "pin-value" | "pin-source" => {
                    return Err(
                        "the PIN is not taken from the URI: give it in VAULT_PKCS11_PIN or with --pin-file"
                            .into(),
                    );
                }
                other => return Err(format!("unsupported PKCS#11 URI query attribute `{other}`")),
            }
        }
        Ok(Self {
            token: token.ok_or_else(|| "the PKCS#11 URI names no `token`".to_owned())?,
            object: object.ok_or_else(|| "the PKCS#11 URI names no `object`".to_owned())?,
            module,
        })
    }
}

/// Where a PKCS#11 root comes from: the URI, the module (if the URI names none), the PIN,
/// and whether a missing key object may be created (`vaultctl init` only).
pub struct Pkcs11RootSource {
    uri: Pkcs11Uri,
    module: Option<PathBuf>,
    pin: Zeroizing<String>,
    create: bool,
}

impl std::fmt::Debug for Pkcs11RootSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11RootSource")
            .field("uri", &self.uri)
            .field("pin", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Pkcs11RootSource {
    /// A source for `uri` (`module`: `VAULT_PKCS11_MODULE`, used when the URI names none).
    pub fn new(
        uri: &str,
        module: Option<PathBuf>,
        pin: Zeroizing<String>,
        create: bool,
    ) -> Result<Self, String> {
        Ok(Self {
            uri: Pkcs11Uri::parse(uri)?,
            module,
            pin,
            create,
        })
    }
}

fn unavailable(what: &str, e: &dyn std::fmt::Display) -> VaultError {
    VaultError::RootKeyUnavailable(format!("PKCS#11 {what}: {e}"))
}

impl RootKeySource for Pkcs11RootSource {
    fn load(&self) -> Result<Box<dyn Root>, VaultError> {
        let module = self
            .uri
            .module
            .clone()
            .or_else(|| self.module.clone())
            .ok_or_else(|| {
                VaultError::RootKeyUnavailable(
                "no PKCS#11 module: name it in the URI (`?module-path=`) or in VAULT_PKCS11_MODULE"
                    .into(),
            )
            })?;
        let ctx =
            Pkcs11::new(&module).map_err(|e| unavailable(&module.display().to_string(), &e))?;
        match ctx.initialize(CInitializeArgs::OsThreads) {
            Ok(()) | Err(cryptoki::error::Error::AlreadyInitialized) => {}
            Err(e) => return Err(unavailable("initialize", &e)),
        }
        let slots = ctx
            .get_slots_with_token()
            .map_err(|e| unavailable("slots", &e))?;
        let slot = slots
            .into_iter()
            .find(|s| {
                ctx.get_token_info(*s)
                    .is_ok_and(|t| t.label().trim_end() == self.uri.token)
            })
            .ok_or_else(|| {
                VaultError::RootKeyUnavailable(format!(
                    "PKCS#11: no token labelled `{}`",
                    self.uri.token
                ))
            })?;
        let session = ctx
            .open_rw_session(slot)
            .map_err(|e| unavailable("session", &e))?;
        session
            .login(UserType::User, Some(&AuthPin::new(self.pin.to_string())))
            .map_err(|e| unavailable("login (check VAULT_PKCS11_PIN)", &e))?;
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Label(self.uri.object.clone().into_bytes()),
        ];
        let found = session
            .find_objects(&template)
            .map_err(|e| unavailable("find the key", &e))?;
        let key = match found.as_slice() {
            [one] => *one,
            [] if self.create => session
                .generate_key(
                    &Mechanism::AesKeyGen,
                    &[
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(false),
                        Attribute::Encrypt(true),
                        Attribute::Decrypt(true),
                        Attribute::ValueLen(32.into()),
                        Attribute::Label(self.uri.object.clone().into_bytes()),
                    ],
                )
                .map_err(|e| unavailable("create the key", &e))?,
            [] => {
                return Err(VaultError::RootKeyUnavailable(format!(
                    "PKCS#11: token `{}` holds no key `{}` (`vaultctl init` creates it)",
                    self.uri.token, self.uri.object
                )));
            }
            _ => {
                return Err(VaultError::RootKeyUnavailable(format!(
                    "PKCS#11: token `{}` holds several keys `{}`",
                    self.uri.token, self.uri.object
                )));
            }
        };
        // The key must never leave the token.
        let attrs = session
            .get_attributes(key, &[AttributeType::Extractable, AttributeType::Sensitive])
            .map_err(|e| unavailable("key attributes", &e))?;
        let exportable = attrs.iter().any(|a| {
            matches!(a, Attribute::Extractable(true)) || matches!(a, Attribute::Sensitive(false))
        });
        if exportable {
            return Err(VaultError::RootKeyUnavailable(format!(
                "PKCS#11: key `{}` can leave the token (extractable or not sensitive); \
                 the root key must not",
                self.uri.object
            )));
        }
        Ok(Box::new(Pkcs11Root {
            session: Mutex::new(session),
            key,
            _ctx: ctx,
        }))
    }
}

/// A root whose key stays in the token.
struct Pkcs11Root {
    session: Mutex<Session>,
    key: ObjectHandle,
    _ctx: Pkcs11,
}

fn aad(label: &str) -> Vec<u8> {
    let mut a = b"cdv.token.v1\0".to_vec();
    a.extend_from_slice(label.as_bytes());
    a
}

impl Root for Pkcs11Root {
    fn wrap_secret(&self, label: &str, secret: &[u8; 32]) -> Result<Vec<u8>, VaultError> {
        let mut iv = [0u8; IV_LEN];
        vault_core::crypto::random_bytes(&mut iv)?;
        let aad = aad(label);
        let mut iv_param = iv;
        let params = GcmParams::new(&mut iv_param, &aad, TAG_BITS.into())
            .map_err(|e| unavailable("GCM parameters", &e))?;
        let session = self
            .session
            .lock()
            .map_err(|_| VaultError::RootKeyUnavailable("PKCS#11 session poisoned".into()))?;
        let ct = session
            .encrypt(&Mechanism::AesGcm(params), self.key, secret)
            .map_err(|e| unavailable("wrap", &e))?;
        let mut out = vec![FORMAT_TOKEN, ALG_AES256GCM];
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn unwrap_secret(
        &self,
        label: &str,
        wrapped: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, VaultError> {
        if wrapped.len() != 2 + IV_LEN + 32 + 16
            || wrapped.first() != Some(&FORMAT_TOKEN)
            || wrapped.get(1) != Some(&ALG_AES256GCM)
        {
            return Err(VaultError::IntegrityFailure);
        }
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(
            wrapped
                .get(2..2 + IV_LEN)
                .ok_or(VaultError::IntegrityFailure)?,
        );
        let aad = aad(label);
        let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into())
            .map_err(|e| unavailable("GCM parameters", &e))?;
        let session = self
            .session
            .lock()
            .map_err(|_| VaultError::RootKeyUnavailable("PKCS#11 session poisoned".into()))?;
        let pt = Zeroizing::new(
            session
                .decrypt(
                    &Mechanism::AesGcm(params),
                    self.key,
                    wrapped
                        .get(2 + IV_LEN..)
                        .ok_or(VaultError::IntegrityFailure)?,
                )
                .map_err(|_| VaultError::WrongRootKey)?,
        );
        let mut out = Zeroizing::new([0u8; 32]);
        if pt.len() != 32 {
            return Err(VaultError::IntegrityFailure);
        }
        out.copy_from_slice(&pt);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_parsed_strictly() {
        let u = Pkcs11Uri::parse(
            "pkcs11:token=vault;object=vault%20root?module-path=/usr/lib/softhsm/libsofthsm2.so",
        )
        .unwrap();
        assert_eq!(
            (u.token.as_str(), u.object.as_str()),
            ("vault", "vault root")
        );
        assert_eq!(
            u.module.as_deref(),
            Some(std::path::Path::new("/usr/lib/softhsm/libsofthsm2.so"))
        );
        assert!(Pkcs11Uri::parse("pkcs11:object=x").is_err(), "no token");
        assert!(Pkcs11Uri::parse("pkcs11:token=t").is_err(), "no object");
        assert!(Pkcs11Uri::parse("pkcs11:token=t;object=o;serial=1").is_err());
        assert!(Pkcs11Uri::parse("pkcs11:token=t;object=o?pin-value=1234").is_err());
        assert!(Pkcs11Uri::parse("pkcs11:token=%zz;object=o").is_err());
        assert!(Pkcs11Uri::parse("file:/x").is_err());
    }
}
