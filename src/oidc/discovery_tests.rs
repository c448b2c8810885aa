use super::*;
use serde_json::json;

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

fn doc(value: serde_json::Value) -> ProviderMetadata {
    ProviderMetadata::from_json(value).unwrap()
}

fn complete() -> ProviderMetadata {
    doc(json!({
        "issuer": "https://auth.bank.example",
        "authorization_endpoint": "https://auth.bank.example/authorize",
        "token_endpoint": "https://mtls.bank.example/token",
        "jwks_uri": "https://keys.bank.example/jwks",
        "registration_endpoint": "https://mtls.bank.example/register",
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "tls_client_auth"],
        "id_token_signing_alg_values_supported": ["PS256"],
        "mtls_endpoint_aliases": {"token_endpoint": "https://mtls.bank.example/token"}
    }))
}

#[test]
fn discovery_url_keeps_the_path_prefix() {
    assert_eq!(
        discovery_url(&url("https://bank.example")).as_str(),
        "https://bank.example/.well-known/openid-configuration"
    );
    assert_eq!(
        discovery_url(&url("https://bank.example/brand/a/")).as_str(),
        "https://bank.example/brand/a/.well-known/openid-configuration"
    );
    assert_eq!(
        discovery_url(&url("https://bank.example/brand?x=1")).as_str(),
        "https://bank.example/brand/.well-known/openid-configuration"
    );
}

#[test]
fn metadata_is_read_leniently() {
    let read = doc(json!({
        "issuer": "https://auth.bank.example",
        "token_endpoint": 42,
        "response_modes_supported": "fragment",
        "id_token_signing_alg_values_supported": ["PS256", 7, null],
        "mtls_endpoint_aliases": ["not", "a", "map"]
    }));
    assert_eq!(read.token_endpoint, None, "a wrong type counts as absent");
    assert_eq!(read.response_modes_supported, vec!["fragment"]);
    assert_eq!(read.id_token_signing_alg_values_supported, vec!["PS256"]);
    assert!(read.token_endpoint_auth_methods_supported.is_empty());
    assert_eq!(read.mtls_endpoint_aliases, None);
    assert_eq!(
        complete().token_endpoint_auth_methods_supported,
        vec!["private_key_jwt", "tls_client_auth"]
    );
    assert_eq!(
        ProviderMetadata::from_json(json!(["issuer"])),
        Err(DiscoveryError::NotAnObject)
    );
}

#[test]
fn a_complete_document_resolves() {
    let got = resolve(
        Some(&complete()),
        &url("https://auth.bank.example/"),
        &EndpointOverrides::default(),
    )
    .unwrap();
    assert_eq!(got.issuer, "https://auth.bank.example");
    assert_eq!(got.token.as_str(), "https://mtls.bank.example/token");
    assert_eq!(got.jwks.as_str(), "https://keys.bank.example/jwks");
    assert_eq!(
        got.registration.map(String::from).as_deref(),
        Some("https://mtls.bank.example/register")
    );
}

#[test]
fn overrides_win_and_fill_gaps() {
    let mut partial = complete();
    partial.token_endpoint = None;
    partial.registration_endpoint = None;
    let overrides = EndpointOverrides {
        token: Some("https://mtls.bank.example/as/token.oauth2".into()),
        jwks: Some("https://directory.example/bank/jwks".into()),
        registration: Some(" ".into()),
        ..Default::default()
    };
    let got = resolve(
        Some(&partial),
        &url("https://auth.bank.example"),
        &overrides,
    )
    .unwrap();
    assert_eq!(
        got.token.as_str(),
        "https://mtls.bank.example/as/token.oauth2"
    );
    assert_eq!(got.jwks.as_str(), "https://directory.example/bank/jwks");
    assert_eq!(got.registration, None, "a blank override counts as unset");
}

#[test]
fn without_a_document_every_required_endpoint_needs_an_override() {
    let all = EndpointOverrides {
        authorization: Some("https://bank.example/auth".into()),
        token: Some("https://bank.example/token".into()),
        jwks: Some("https://bank.example/jwks".into()),
        registration: None,
    };
    let got = resolve(None, &url("https://bank.example"), &all).unwrap();
    assert_eq!(got.issuer, "https://bank.example");
    let prefixed = resolve(None, &url("https://bank.example/oidc/"), &all).unwrap();
    assert_eq!(prefixed.issuer, "https://bank.example/oidc/");
    let no_jwks = EndpointOverrides { jwks: None, ..all };
    let err = resolve(None, &url("https://bank.example"), &no_jwks).unwrap_err();
    assert_eq!(err, DiscoveryError::Missing("jwks_uri"));
    assert!(err.to_string().contains("override"), "{err}");
}

#[test]
fn a_missing_token_endpoint_names_the_field() {
    let mut partial = complete();
    partial.token_endpoint = None;
    let err = resolve(
        Some(&partial),
        &url("https://auth.bank.example"),
        &EndpointOverrides::default(),
    )
    .unwrap_err();
    assert_eq!(err, DiscoveryError::Missing("token_endpoint"));
}

#[test]
fn another_issuer_is_a_mix_up() {
    let expected = url("https://auth.bank.example");
    let none = EndpointOverrides::default();
    let mut other = complete();
    other.issuer = Some("https://auth.evil.example".into());
    assert!(matches!(
        resolve(Some(&other), &expected, &none),
        Err(DiscoveryError::IssuerMismatch { .. })
    ));
    // Exact apart from a trailing slash: no case folding, no path tolerance.
    for found in ["https://AUTH.bank.example", "https://auth.bank.example/x"] {
        other.issuer = Some(found.into());
        assert!(resolve(Some(&other), &expected, &none).is_err(), "{found}");
    }
    other.issuer = Some("https://auth.bank.example/".into());
    assert_eq!(
        resolve(Some(&other), &expected, &none).unwrap().issuer,
        "https://auth.bank.example/",
        "the document's spelling is what id tokens carry"
    );
    other.issuer = None;
    assert_eq!(
        resolve(Some(&other), &expected, &none),
        Err(DiscoveryError::MissingIssuer)
    );
}

#[test]
fn plain_http_is_refused_except_on_loopback() {
    let none = EndpointOverrides::default();
    let mut insecure = complete();
    insecure.token_endpoint = Some("http://mtls.bank.example/token".into());
    assert_eq!(
        resolve(Some(&insecure), &url("https://auth.bank.example"), &none),
        Err(DiscoveryError::NotHttps("token_endpoint"))
    );
    assert_eq!(
        resolve(Some(&complete()), &url("http://auth.bank.example"), &none),
        Err(DiscoveryError::NotHttps("issuer"))
    );
    for host in ["127.0.0.1:8443", "localhost", "[::1]:9000"] {
        let base = format!("http://{host}");
        let local = doc(json!({
            "issuer": base,
            "authorization_endpoint": format!("{base}/auth"),
            "token_endpoint": format!("{base}/token"),
            "jwks_uri": format!("{base}/jwks"),
        }));
        assert!(resolve(Some(&local), &url(&base), &none).is_ok(), "{host}");
    }
    let mut odd = complete();
    odd.jwks_uri = Some("ftp://keys.bank.example/jwks".into());
    assert!(resolve(Some(&odd), &url("https://auth.bank.example"), &none).is_err());
}

#[test]
fn unusable_urls_are_refused() {
    let none = EndpointOverrides::default();
    let expected = url("https://auth.bank.example");
    for bad in [
        "/token",
        "https://user:pw@mtls.bank.example/token",
        "https://mtls.bank.example/token#frag",
    ] {
        let mut d = complete();
        d.token_endpoint = Some(bad.into());
        assert!(
            matches!(
                resolve(Some(&d), &expected, &none),
                Err(DiscoveryError::InvalidUrl {
                    field: "token_endpoint",
                    ..
                })
            ),
            "{bad}"
        );
    }
    let over = EndpointOverrides {
        token: Some("not a url".into()),
        ..Default::default()
    };
    assert!(resolve(Some(&complete()), &expected, &over).is_err());
}
