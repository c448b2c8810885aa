//! Helpers of the standard-profile tests: a TPP with its signing key and JWKS served locally,
//! the fake bank, and the steps of the flow.

use aws_lc_rs::signature::KeyPair as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fake_provider::{Config, FakeProvider, ObAuthoriseOptions, ObOptions, ObRedirect, Profile};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use std::collections::HashMap;

/// The TPP's registered redirect URI.
pub const REDIRECT: &str = "https://tpp.example/callback";

/// A TPP: its client at the bank and its PS256 key, whose JWKS it serves itself.
pub struct Tpp {
    pub client_id: String,
    pub secret: String,
    pub key: &'static aws_lc_rs::rsa::KeyPair,
    /// One client per test: building one costs tens of milliseconds.
    pub http: reqwest::Client,
}

/// Serves `jwks` at `http://127.0.0.1:port/jwks`.
async fn serve_jwks(jwks: Value) -> String {
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/jwks")
}

/// The signing key of a TPP: generated once per test binary (it takes a while), one for
/// `tpp-b` and one for every other client, so two TPPs of a test have different keys.
fn tpp_key(client_id: &str) -> &'static aws_lc_rs::rsa::KeyPair {
    use std::sync::OnceLock;
    static KEYS: [OnceLock<aws_lc_rs::rsa::KeyPair>; 2] = [OnceLock::new(), OnceLock::new()];
    KEYS[usize::from(client_id == "tpp-b")].get_or_init(|| {
        aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap()
    })
}

impl Tpp {
    /// A TPP with a fresh key, provisioned at `fake`.
    pub async fn at(fake: &FakeProvider, client_id: &str) -> Tpp {
        let key = tpp_key(client_id);
        let public = key.public_key();
        let jwks = json!({"keys": [{
            "kty": "RSA", "kid": "tpp-1", "use": "sig", "alg": "PS256",
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        }]});
        let jwks_url = serve_jwks(jwks).await;
        let secret = format!("{client_id}-secret");
        fake.add_client(client_id, &secret, &jwks_url, &[REDIRECT]);
        Tpp {
            client_id: client_id.to_string(),
            secret,
            key,
            http: reqwest::Client::new(),
        }
    }

    /// A JWS of `claims` with `alg` PS256 or RS256 (the latter for refusal tests).
    pub fn sign(&self, alg: &str, claims: &Value) -> String {
        let header = json!({"alg": alg, "kid": "tpp-1", "typ": "JWT"});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let padding: &'static dyn aws_lc_rs::signature::RsaEncoding = match alg {
            "PS256" => &aws_lc_rs::signature::RSA_PSS_SHA256,
            "RS256" => &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            other => panic!("no {other}"),
        };
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                padding,
                &aws_lc_rs::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// The claims of a correct request object for `consent_id`.
    pub fn request_claims(&self, fake: &FakeProvider, consent_id: &str) -> Value {
        let now = jiff::Timestamp::now().as_second();
        json!({
            "iss": self.client_id, "client_id": self.client_id, "aud": fake.issuer(),
            "response_type": "code id_token", "scope": "openid accounts",
            "redirect_uri": REDIRECT, "state": "state-42", "nonce": "nonce-7",
            "claims": {"id_token": {"openbanking_intent_id": {"value": consent_id, "essential": true}}},
            "iat": now, "nbf": now, "exp": now + 600,
        })
    }
}

/// A fake bank of the standard profile.
pub async fn bank(options: ObOptions) -> FakeProvider {
    bank_with(Config::default(), options).await
}

/// A fake bank of the standard profile with other settings from `config`.
pub async fn bank_with(config: Config, options: ObOptions) -> FakeProvider {
    FakeProvider::start(Config {
        profile: Profile::OpenBankingUk(options),
        ..config
    })
    .await
    .unwrap()
}

/// `POST /token` with `client_secret_basic`.
pub async fn token(fake: &FakeProvider, tpp: &Tpp, form: &[(&str, &str)]) -> reqwest::Response {
    tpp.http
        .post(format!("{}/token", fake.base_url()))
        .basic_auth(&tpp.client_id, Some(&tpp.secret))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// A client-credentials access token.
pub async fn client_token(fake: &FakeProvider, tpp: &Tpp) -> String {
    let form = [("grant_type", "client_credentials"), ("scope", "accounts")];
    let v: Value = token(fake, tpp, &form).await.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

/// The consents URL of the default prefix.
pub fn consents_url(fake: &FakeProvider) -> String {
    format!(
        "{}/open-banking/v3.1/aisp/account-access-consents",
        fake.base_url()
    )
}

/// A new consent of `tpp` awaiting authorisation.
pub async fn consent(fake: &FakeProvider, tpp: &Tpp) -> String {
    let body = json!({"Data": {"Permissions": ["ReadAccountsBasic"], "ExpirationDateTime": "2099-01-01T00:00:00+00:00"}, "Risk": {}});
    let v: Value = tpp
        .http
        .post(consents_url(fake))
        .bearer_auth(client_token(fake, tpp).await)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["Data"]["ConsentId"].as_str().unwrap().to_string()
}

/// The customer's visit to `/authorize` with the request object `jwt`.
pub async fn authorize(fake: &FakeProvider, tpp: &Tpp, jwt: &str) -> reqwest::Response {
    let query = [
        ("client_id", tpp.client_id.as_str()),
        ("response_type", "code id_token"),
        ("scope", "openid accounts"),
        ("redirect_uri", REDIRECT),
        ("state", "state-42"),
        ("nonce", "nonce-7"),
        ("request", jwt),
    ];
    let query = serde_urlencoded::to_string(query).unwrap();
    tpp.http
        .get(format!("{}/authorize?{query}", fake.base_url()))
        .send()
        .await
        .unwrap()
}

/// A consent brought to `/authorize` with a correct request object, then decided.
pub async fn decided(
    fake: &FakeProvider,
    tpp: &Tpp,
    approve: bool,
    options: ObAuthoriseOptions,
) -> (String, ObRedirect) {
    let consent_id = consent(fake, tpp).await;
    let jwt = tpp.sign("PS256", &tpp.request_claims(fake, &consent_id));
    assert_eq!(authorize(fake, tpp, &jwt).await.status(), 200);
    let redirect = fake.ob_authorise(&consent_id, approve, options).unwrap();
    (consent_id, redirect)
}

/// The redirect URL's target, separator (`#` or `?`) and parameters.
pub fn split_redirect(url: &str) -> (String, char, HashMap<String, String>) {
    let at = url.find(['#', '?']).unwrap();
    let params = serde_urlencoded::from_str(&url[at + 1..]).unwrap();
    (
        url[..at].to_string(),
        url[at..].chars().next().unwrap(),
        params,
    )
}

/// The code exchange.
pub async fn exchange(fake: &FakeProvider, tpp: &Tpp, code: &str) -> reqwest::Response {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
    ];
    token(fake, tpp, &form).await
}

/// A refresh.
pub async fn refresh(fake: &FakeProvider, tpp: &Tpp, refresh_token: &str) -> reqwest::Response {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ];
    token(fake, tpp, &form).await
}

/// The id_token's claims, verified as a relying party does with `jsonwebtoken`: PS256 against
/// the bank's `/jwks` (the key of the header's kid), `iss`, `aud` and `exp`.
pub async fn verify_id_token(
    fake: &FakeProvider,
    tpp: &Tpp,
    id_token: &str,
) -> Result<Value, jsonwebtoken::errors::Error> {
    let client_id = tpp.client_id.as_str();
    let jwks: jsonwebtoken::jwk::JwkSet = tpp
        .http
        .get(format!("{}/jwks", fake.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(id_token)?;
    let kid = header.kid.unwrap_or_default();
    let Some(jwk) = jwks.find(&kid) else {
        return Err(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat.into());
    };
    let mut validation = Validation::new(Algorithm::PS256);
    validation.set_issuer(&[fake.issuer()]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "iat"]);
    validation.leeway = 30;
    let key = DecodingKey::from_jwk(jwk)?;
    jsonwebtoken::decode::<Value>(id_token, &key, &validation).map(|d| d.claims)
}

/// The claims of a JWS, unverified.
pub fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The header of a JWS, unverified.
pub fn header_of(jwt: &str) -> Value {
    let header = jwt.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

/// OpenID Connect's `c_hash`/`s_hash`, computed independently of the fake.
pub fn half_hash(value: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16])
}
