//! TLS: the rustls server configuration (ring provider, TLS 1.3 and 1.2, AEAD suites only,
//! client certificates verified against the agency CA but optional at the handshake) and the
//! per-connection peer identity handed to handlers.

use std::path::Path;
use std::sync::Arc;

use actix_web::dev::Extensions;
use base64::Engine as _;
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{RootCertStore, ServerConfig};

/// The cipher suites offered: AEAD only, forward secret only.
fn suites() -> Vec<rustls::SupportedCipherSuite> {
    use ring::cipher_suite as cs;
    vec![
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ]
}

/// The one crypto provider of the process: ring, with the suites above.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: suites(),
        ..ring::default_provider()
    })
}

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#8, SEC1 or PKCS#1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads every CRL of a PEM file.
pub fn load_crls(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateRevocationListDer<'static>>, String> {
    let crls: Vec<_> = rustls::pki_types::CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if crls.is_empty() {
        return Err(format!("{}: no CRL in the file", path.display()));
    }
    Ok(crls)
}

/// The client-certificate verifier built from the agency CA and the CRLs.
fn client_verifier(
    client_ca: &Path,
    crls: &[std::path::PathBuf],
) -> Result<(Arc<dyn ClientCertVerifier>, usize), String> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(client_ca).map_err(|e| format!("tls.client_ca: {e}"))? {
        roots
            .add(c)
            .map_err(|e| format!("tls.client_ca: {}: {e}", client_ca.display()))?;
    }
    let mut revoked = Vec::new();
    for path in crls {
        revoked.extend(load_crls(path).map_err(|e| format!("tls.client_crls: {e}"))?);
    }
    let n = revoked.len();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .with_crls(revoked)
        .only_check_end_entity_revocation()
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("client CA {}: {e}", client_ca.display()))?;
    Ok((verifier, n))
}

/// The client-certificate verifier whose CRLs are read again on a reload (`vaultctl
/// reload`, SIGHUP), without a restart: a handshake uses the verifier in force when it
/// starts. The CA (and so the names hinted to clients) is the one read at start.
pub struct ReloadableClientVerifier {
    inner: std::sync::RwLock<Arc<dyn ClientCertVerifier>>,
    hints: Vec<rustls::DistinguishedName>,
    client_ca: std::path::PathBuf,
    crls: Vec<std::path::PathBuf>,
}

impl std::fmt::Debug for ReloadableClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadableClientVerifier")
            .field("crls", &self.crls)
            .finish_non_exhaustive()
    }
}

impl ReloadableClientVerifier {
    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        match self.inner.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Reads the CRLs again; how many CRLs are now in force. A CRL that
    /// fails to load is refused and the ones in force stay.
    pub fn reload(&self) -> Result<usize, String> {
        let (next, n) = client_verifier(&self.client_ca, &self.crls)?;
        match self.inner.write() {
            Ok(mut g) => *g = next,
            Err(p) => *p.into_inner() = next,
        }
        Ok(n)
    }
}

impl ClientCertVerifier for ReloadableClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.current().offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.current().client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &self.hints
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

/// The server's TLS configuration, and its client-certificate verifier (to reload CRLs).
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    crls: &[std::path::PathBuf],
) -> Result<(ServerConfig, Arc<ReloadableClientVerifier>), String> {
    let provider = provider();
    let (first, _) = client_verifier(client_ca, crls)?;
    let verifier = Arc::new(ReloadableClientVerifier {
        hints: first.root_hint_subjects().to_vec(),
        inner: std::sync::RwLock::new(first),
        client_ca: client_ca.to_owned(),
        crls: crls.to_vec(),
    });
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_client_cert_verifier(Arc::clone(&verifier) as Arc<dyn ClientCertVerifier>)
        .with_single_cert(
            load_certs(cert).map_err(|e| format!("tls.cert: {e}"))?,
            load_key(key).map_err(|e| format!("tls.key: {e}"))?,
        )
        .map_err(|e| format!("server certificate {}: {e}", cert.display()))?;
    // No TLS session resumption: a resumed session would skip the client certificate's
    // check, so a certificate revoked by a reloaded CRL would keep working.
    let mut config = config;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok((config, verifier))
}

/// The verified client certificate of a connection.
#[derive(Debug, Clone)]
pub struct PeerCert {
    /// base64url (no padding) SHA-256 of the certificate DER: the RFC 8705 `x5t#S256`.
    pub thumbprint: String,
    /// The identity its SAN URIs name, if any.
    pub identity: Option<crate::x509::CertIdentity>,
}

impl PeerCert {
    /// From a verified certificate's DER.
    pub fn from_der(der: &[u8]) -> Self {
        let digest = ::ring::digest::digest(&::ring::digest::SHA256, der);
        Self {
            thumbprint: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref()),
            identity: crate::x509::san_uris(der).and_then(|u| crate::x509::identity(&u)),
        }
    }
}

/// `HttpServer::on_connect` hook: stores the verified peer certificate (if any) in the
/// connection's data, computed once per connection.
pub fn on_connect(conn: &dyn std::any::Any, data: &mut Extensions) {
    use actix_tls::accept::rustls_0_23::TlsStream;
    use actix_web::rt::net::TcpStream;
    if let Some(tls) = conn.downcast_ref::<TlsStream<TcpStream>>() {
        let (_, session) = tls.get_ref();
        if let Some(leaf) = session.peer_certificates().and_then(|c| c.first()) {
            data.insert(PeerCert::from_der(leaf.as_ref()));
        }
    }
}
