//! Reads the subject alternative name URIs of a certificate that rustls has already verified:
//! a minimal DER walk over the few structures needed, refusing anything malformed.

/// One DER element: its tag, its contents and what follows it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    Some((tag, value, rest))
}

/// The elements of a constructed value.
fn elements(mut input: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (tag, value, rest) = tlv(input)?;
        out.push((tag, value));
        input = rest;
    }
    Some(out)
}

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const EXTENSIONS: u8 = 0xa3;
const URI: u8 = 0x86;
const SUBJECT_ALT_NAME: [u8; 3] = [0x55, 0x1d, 0x11];

/// The URIs in the certificate's subjectAltName extension (empty when it has none, `None`
/// when the DER is malformed).
pub fn san_uris(cert_der: &[u8]) -> Option<Vec<String>> {
    let (tag, cert, _) = tlv(cert_der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut uris = Vec::new();
    for (tag, value) in elements(tbs)? {
        if tag != EXTENSIONS {
            continue;
        }
        let (tag, exts, _) = tlv(value)?;
        if tag != SEQUENCE {
            return None;
        }
        for (tag, ext) in elements(exts)? {
            if tag != SEQUENCE {
                return None;
            }
            let parts = elements(ext)?;
            let Some(&(OID, oid)) = parts.first() else {
                return None;
            };
            if oid != SUBJECT_ALT_NAME {
                continue;
            }
            let &(_, octets) = parts.iter().find(|(t, _)| *t == OCTET_STRING)?;
            let (tag, names, _) = tlv(octets)?;
            if tag != SEQUENCE {
                return None;
            }
            for (tag, name) in elements(names)? {
                if tag == URI {
                    uris.push(std::str::from_utf8(name).ok()?.to_owned());
                }
            }
        }
    }
    Some(uris)
}

/// A certificate's `notAfter` as RFC 3339 (`2027-12-06T10:00:00Z`): the validity is the
/// fifth element of the TBS certificate when the version is present, the fourth otherwise.
pub fn not_after(cert_der: &[u8]) -> Option<String> {
    let (tag, cert, _) = tlv(cert_der)?;
    let (tag2, tbs, _) = tlv(cert)?;
    if tag != SEQUENCE || tag2 != SEQUENCE {
        return None;
    }
    let parts = elements(tbs)?;
    let skip = usize::from(parts.first()?.0 == 0xa0);
    let &(tag, validity) = parts.get(skip + 3)?;
    if tag != SEQUENCE {
        return None;
    }
    let &(kind, time) = elements(validity)?.get(1)?;
    let t = std::str::from_utf8(time).ok()?;
    let digits = t.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let full = match (kind, digits.len()) {
        // UTCTime: YYMMDDHHMMSS, years 50–99 are 19xx (RFC 5280 4.1.2.5.1).
        (0x17, 12) => {
            let yy: u32 = digits.get(..2)?.parse().ok()?;
            format!("{}{digits}", if yy >= 50 { "19" } else { "20" })
        }
        // GeneralizedTime: YYYYMMDDHHMMSS.
        (0x18, 14) => digits.to_owned(),
        _ => return None,
    };
    let d = |a: usize, b: usize| full.get(a..b);
    Some(format!(
        "{}-{}-{}T{}:{}:{}Z",
        d(0, 4)?,
        d(4, 6)?,
        d(6, 8)?,
        d(8, 10)?,
        d(10, 12)?,
        d(12, 14)?
    ))
}

/// The identity a client certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertIdentity {
    /// `urn:vault:agency:<id>`.
    Agency(String),
    /// `urn:vault:auditor:<id>`.
    Auditor(String),
}

/// The first vault identity among a certificate's SAN URIs.
pub fn identity(uris: &[String]) -> Option<CertIdentity> {
    uris.iter().find_map(|u| {
        if let Some(id) = u.strip_prefix("urn:vault:agency:") {
            Some(CertIdentity::Agency(id.to_owned()))
        } else {
            u.strip_prefix("urn:vault:auditor:")
                .map(|id| CertIdentity::Auditor(id.to_owned()))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(sans: Vec<rcgen::SanType>) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = sans;
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_uris_among_other_names() {
        let der = cert(vec![
            rcgen::SanType::DnsName("a.example".try_into().unwrap()),
            rcgen::SanType::URI("urn:vault:agency:ubnd-phuong-sai-gon".try_into().unwrap()),
            rcgen::SanType::URI("https://x.example/".try_into().unwrap()),
        ]);
        let uris = san_uris(&der).unwrap();
        assert_eq!(
            uris,
            ["urn:vault:agency:ubnd-phuong-sai-gon", "https://x.example/"]
        );
        assert_eq!(
            identity(&uris),
            Some(CertIdentity::Agency("ubnd-phuong-sai-gon".into()))
        );
        let der = cert(vec![rcgen::SanType::URI(
            "urn:vault:auditor:kt-01".try_into().unwrap(),
        )]);
        assert_eq!(
            identity(&san_uris(&der).unwrap()),
            Some(CertIdentity::Auditor("kt-01".into()))
        );
        assert_eq!(san_uris(&cert(vec![])).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn reads_the_expiry() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 7, 15);
        let key = rcgen::KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        assert_eq!(not_after(&der).as_deref(), Some("2031-07-15T00:00:00Z"));
        assert_eq!(not_after(&der[..40]), None);
    }

    #[test]
    fn malformed_der_is_refused_without_panic() {
        let der = cert(vec![rcgen::SanType::URI(
            "urn:vault:agency:x".try_into().unwrap(),
        )]);
        for cut in 0..der.len() {
            let _ = san_uris(&der[..cut]);
        }
        for i in 0..der.len() {
            let mut d = der.clone();
            d[i] ^= 0xff;
            let _ = san_uris(&d);
        }
        assert_eq!(san_uris(&[]), None);
        assert_eq!(san_uris(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
