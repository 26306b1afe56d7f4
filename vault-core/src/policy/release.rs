//! The release decision: a `Release` is the proof that the policy allowed these fields to be
//! opened for this purpose, and only `authorize_release` makes one (its fields are private
//! and it is neither `Clone` nor constructible elsewhere), so the vault cannot reach field
//! decryption for an agency without it. Pure: the policy set and the grant's facts in, a
//! capability or a denial out.

use super::PolicySet;

/// Permission to open `fields` of one citizen's record for `purpose`. Made only by
/// `authorize_release`.
#[derive(Debug)]
pub struct Release {
    purpose: String,
    fields: Vec<String>,
}

impl Release {
    /// The purpose the fields are released for.
    pub fn purpose(&self) -> &str {
        &self.purpose
    }

    /// The fields (and derived answers) released, as requested.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }
}

/// Why a release is not allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseDenial {
    /// A requested field is not among those the grant names.
    NotGranted,
    /// The grant's purpose is no longer in the policy set.
    PurposeWithdrawn,
    /// The purpose no longer allows this field (the policy changed since the grant).
    NotInPurpose(String),
}

/// Decides a release of `requested` under a grant for `purpose` that names `granted`:
/// every requested field must be granted and still allowed by the purpose. The request is
/// moved into the `Release`, or handed back with the denial (its refusal names the fields).
pub fn authorize_release(
    set: &PolicySet,
    purpose: &str,
    granted: &[String],
    requested: Vec<String>,
) -> Result<Release, (ReleaseDenial, Vec<String>)> {
    if requested.iter().any(|f| !granted.contains(f)) {
        return Err((ReleaseDenial::NotGranted, requested));
    }
    let Some(p) = set.purpose(purpose) else {
        return Err((ReleaseDenial::PurposeWithdrawn, requested));
    };
    if let Some(f) = requested.iter().find(|f| !p.allows(f)) {
        let denial = ReleaseDenial::NotInPurpose(f.clone());
        return Err((denial, requested));
    }
    Ok(Release {
        purpose: p.id.clone(),
        fields: requested,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn set() -> PolicySet {
        PolicySet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")).unwrap()
    }

    fn f(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_release_is_allowed_for_granted_fields_the_purpose_still_allows() {
        let s = set();
        let granted = f(&["full_name", "phone"]);
        let r = authorize_release(&s, "construction_permit", &granted, f(&["phone"])).unwrap();
        assert_eq!(
            (r.purpose(), r.fields()),
            ("construction_permit", &f(&["phone"])[..])
        );
        assert_eq!(
            authorize_release(&s, "construction_permit", &granted, f(&["tax_code"]))
                .err()
                .map(|e| e.0),
            Some(ReleaseDenial::NotGranted)
        );
        assert_eq!(
            authorize_release(&s, "no_such_purpose", &granted, f(&["phone"]))
                .err()
                .map(|e| e.0),
            Some(ReleaseDenial::PurposeWithdrawn)
        );
        let stale = f(&["full_name", "religion"]);
        assert_eq!(
            authorize_release(&s, "construction_permit", &stale, f(&["religion"]))
                .err()
                .map(|e| e.0),
            Some(ReleaseDenial::NotInPurpose("religion".into()))
        );
    }
}
