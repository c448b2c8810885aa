//! Kubernetes name rules the operator relies on: validating names that come from the internet
//! before they reach an API path, and label values that name an owner whatever its length.

use aws_lc_rs::digest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Longest label value Kubernetes accepts.
pub const MAX_LABEL_VALUE: usize = 63;

/// True for a DNS-1123 label: what a namespace name must be (at most 63 characters of
/// `a-z`, `0-9` and `-`, starting and ending alphanumeric).
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// True for a DNS-1123 subdomain: what most object names must be (at most 253 characters,
/// dot-separated labels).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// The label value naming an owner called `name`: the name itself when it fits a label value,
/// otherwise its first 40 characters and a hash of the whole name (so that it stays unique and
/// valid). The full name is kept in the `tpp-operator.dev/owner` annotation.
pub fn owner_label_value(name: &str) -> String {
    if name.len() <= MAX_LABEL_VALUE {
        return name.to_string();
    }
    let hash = digest::digest(&digest::SHA256, name.as_bytes());
    // 16 bytes of SHA-256, base64url: 22 characters of [A-Za-z0-9_-].
    let mut suffix = URL_SAFE_NO_PAD.encode(&hash.as_ref()[..16]);
    // A label value ends alphanumeric.
    suffix = suffix.replace(['-', '_'], "x");
    let prefix: String = name.chars().take(40).collect();
    format!("{}-{suffix}", prefix.trim_end_matches(['-', '.']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        assert!(is_dns1123_label("team-a"));
        assert!(!is_dns1123_label("Team"));
        assert!(!is_dns1123_label("a/b"));
        assert!(!is_dns1123_label("a%2Fb"));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("acme.accounts-1"));
        assert!(!is_dns1123_subdomain("acme?watch=true"));
        assert!(!is_dns1123_subdomain("acme..b"));
        assert!(!is_dns1123_subdomain(""));
        assert!(is_dns1123_subdomain(&"a".repeat(253)));
        assert!(!is_dns1123_subdomain(&"a".repeat(254)));
    }

    #[test]
    fn owner_labels_are_bounded_unique_and_valid() {
        assert_eq!(owner_label_value("acme"), "acme");
        let long = "a".repeat(253);
        let label = owner_label_value(&long);
        assert!(label.len() <= MAX_LABEL_VALUE, "{label}");
        assert_ne!(label, owner_label_value(&format!("{}b", "a".repeat(252))));
        let valid = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
                && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
        };
        assert!(valid(&label), "{label}");
        let dotted = format!("{}.{}", "b".repeat(39), "c".repeat(100));
        assert!(valid(&owner_label_value(&dotted)));
    }
}
