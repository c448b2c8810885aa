//! A standard UK bank (the fake's openbanking-uk profile) on the real API server: a
//! ClusterProvider found through discovery, a registration adopting its client, a consent from
//! YAML to a customer token that is refreshed past its first expiry, and the id tokens a
//! relying party must refuse (in the spirit of the FAPI 1 Advanced relying-party tests), each
//! refused before the code is spent.

mod common;

use common::objects;
use common::*;
use fake_provider::{
    Config as FakeConfig, Endpoint, FakeProvider, Fault, IdTokenFault, ObAuthoriseOptions,
    ObOptions, Profile,
};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use std::time::Duration;
use tpp_operator::api::{AccountConsent, AccountConsentStatus, TppRegistration};

const CLIENT_ID: &str = "tpp-client-1";
const CLIENT_SECRET: &str = "s3cret-of-the-client";
const REDIRECT: &str = "https://tpp.example/callback";

struct Bank {
    client: Client,
    ns: String,
    fake: FakeProvider,
    operator: Option<Operator>,
    http: Option<(std::net::SocketAddr, HttpServer)>,
    consents: Api<AccountConsent>,
}

/// A standard bank whose tokens live `lifetime` seconds, its ClusterProvider, and an operator
/// with its HTTP server (the bank reads the TPP's keys from its JWKS).
async fn bank(prefix: &str, lifetime: u64) -> Bank {
    let client = client().await;
    let ns = namespace(&client, prefix).await;
    let fake = FakeProvider::start(FakeConfig {
        profile: Profile::OpenBankingUk(ObOptions::default()),
        token_lifetime_secs: lifetime,
        ..FakeConfig::default()
    })
    .await
    .expect("fake bank");
    let provider = format!("{ns}-bank");
    let spec = json!({
        "profile": "openbanking-uk",
        "url": fake.issuer(),
        "allowedNamespaces": {"names": [ns]},
    });
    apply_cluster_provider(&client, &provider, spec).await;
    let operator = Operator::start_with_default(&client, &ns, &provider).await;
    let http = http_server(&operator.ctx).await;
    let jwks = format!("http://{}/jwks/{ns}/tpp", http.0);
    fake.add_client(CLIENT_ID, CLIENT_SECRET, &jwks, &[REDIRECT]);
    let consents = Api::namespaced(client.clone(), &ns);
    Bank {
        client,
        ns,
        fake,
        operator: Some(operator),
        http: Some(http),
        consents,
    }
}

impl Bank {
    /// The registration `tpp`, adopting the client the bank provisioned ("bring your own
    /// registration": this profile's dynamic registration is not a call of the operator yet).
    async fn registration(&self) {
        create_secret(
            &self.client,
            &self.ns,
            "tpp-credentials",
            &[("client_id", CLIENT_ID), ("certificate", CLIENT_SECRET)],
        )
        .await;
        // No signature certificate: this profile's clients are adopted, never registered here.
        let object = objects::registration("tpp")
            .without_signature_certificate()
            .spec("providerRef", json!({"name": format!("{}-bank", self.ns)}));
        let object: TppRegistration = serde_json::from_value(object.json()).expect("registration");
        Api::<TppRegistration>::namespaced(self.client.clone(), &self.ns)
            .create(&PostParams::default(), &object)
            .await
            .expect("create registration");
        let api = Api::<TppRegistration>::namespaced(self.client.clone(), &self.ns);
        wait_ready(&api, "tpp", "True", "TokenRefreshed", 60).await;
        // The signing key must be published before the bank can verify request objects.
        let keyed = wait_for(Duration::from_secs(60), || async {
            let st = api.get_status("tpp").await.ok()?.status?;
            (!st.signing_keys.is_empty()).then_some(())
        })
        .await;
        assert!(keyed.is_some(), "no signing key published");
    }

    /// A consent `name` waiting for the customer; its status.
    async fn consent(&self, name: &str) -> AccountConsentStatus {
        self.create_consent(name).await;
        self.awaiting(name).await
    }

    /// Creates the consent `name`.
    async fn create_consent(&self, name: &str) {
        let object = objects::consent(name, "tpp").redirect_uri(REDIRECT);
        let object: AccountConsent = serde_json::from_value(object.json()).expect("consent");
        self.consents
            .create(&PostParams::default(), &object)
            .await
            .expect("create consent");
    }

    /// The status of consent `name` once it waits for the customer.
    async fn awaiting(&self, name: &str) -> AccountConsentStatus {
        wait_ready(&self.consents, name, "False", "AwaitingAuthorisation", 60)
            .await
            .status
            .expect("status")
    }

    /// The customer opens the authorisation URL (the bank verifies the request object) and
    /// decides; the browser then brings the fragment back to the operator's callback the way
    /// its page posts it. Returns the callback's status.
    async fn authorise(&self, status: &AccountConsentStatus, options: ObAuthoriseOptions) -> u16 {
        let url = status.authorisation_url.clone().expect("authorisation URL");
        assert!(
            url.starts_with(&format!("{}/authorize?", self.fake.issuer())),
            "{url}"
        );
        let visit = reqwest::get(&url).await.expect("visit");
        assert_eq!(
            visit.status().as_u16(),
            200,
            "{}",
            visit.text().await.unwrap_or_default()
        );
        let consent_id = status.consent_id.clone().expect("consent id");
        let redirect = self
            .fake
            .ob_authorise(&consent_id, true, options)
            .expect("decision");
        assert!(
            redirect.url.contains('#'),
            "a fragment redirect: {}",
            redirect.url
        );
        let form = [
            ("code", redirect.code.clone().unwrap_or_default()),
            ("id_token", redirect.id_token.clone().unwrap_or_default()),
            ("state", redirect.state.clone().unwrap_or_default()),
        ];
        let addr = self.http.as_ref().expect("http").0;
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
            .post(format!("http://{addr}/callback"))
            .form(&form)
            .send()
            .await
            .expect("callback")
            .status()
            .as_u16()
    }

    async fn stop(&mut self) {
        if let Some(op) = self.operator.take() {
            op.stop().await;
        }
        self.http.take();
    }
}

#[tokio::test]
async fn a_standard_bank_from_yaml_to_a_customer_token_refreshed_past_its_first_expiry() {
    // Tokens live 20 s; a customer token is refreshed well before that.
    let mut bank = bank("ob-flow", 20).await;
    let providers: Api<tpp_operator::api::ClusterProvider> = Api::all(bank.client.clone());
    let provider = wait_ready(
        &providers,
        &format!("{}-bank", bank.ns),
        "True",
        "ProviderReady",
        30,
    )
    .await;
    let endpoints = provider
        .status
        .and_then(|s| s.endpoints)
        .expect("endpoints");
    assert_eq!(
        endpoints.token,
        format!("{}/token", bank.fake.issuer()),
        "found through discovery"
    );
    assert!(endpoints
        .consents
        .ends_with("/open-banking/v3.1/aisp/account-access-consents"));
    bank.registration().await;
    let status = bank.consent("accounts").await;
    assert!(bank.fake.calls().discovery >= 1, "found through discovery");
    assert_eq!(
        bank.authorise(&status, ObAuthoriseOptions::default()).await,
        200
    );
    let authorised = wait_ready(&bank.consents, "accounts", "True", "Authorised", 60)
        .await
        .status
        .expect("status");
    let first_expiry = authorised.token_expires_at.expect("expiry").0;
    assert!(authorised.refresh_token_secret.is_some());
    let token = secret_data(&bank.client, &bank.ns, "accounts-token")
        .await
        .expect("token Secret");
    assert_eq!(token["token_type"], "Bearer");
    assert!(
        !token.contains_key("refresh_token"),
        "apps never get the refresh token"
    );
    let refresh = secret_data(&bank.client, &bank.ns, "accounts-refresh-token")
        .await
        .expect("refresh token Secret");
    assert!(refresh.contains_key("refresh_token"));
    // Past the first token's expiry the consent is still Ready, with a newer token.
    let later = wait_for(Duration::from_secs(60), || async {
        let st = bank.consents.get_status("accounts").await.ok()?.status?;
        let expiry = st.token_expires_at.as_ref()?.0;
        let ready = st
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        (jiff::Timestamp::now() > first_expiry && expiry > first_expiry && ready).then_some(st)
    })
    .await;
    assert!(
        later.is_some(),
        "the customer token was not refreshed past its first expiry"
    );
    let refreshes = bank
        .fake
        .tokens()
        .iter()
        .filter(|t| t.grant_type == "refresh_token")
        .count();
    assert!(refreshes >= 1, "{refreshes} refreshes");
    let now = secret_data(&bank.client, &bank.ns, "accounts-token")
        .await
        .expect("token");
    assert_ne!(
        now["access_token"], token["access_token"],
        "the Secret holds the new token"
    );
    bank.stop().await;
}

#[tokio::test]
async fn a_refused_refresh_that_is_not_invalid_grant_keeps_the_refresh_token() {
    // A 401 at refresh (the client's credentials, not the refresh token) is a failure to retry,
    // never the end of the customer's access.
    let mut bank = bank("ob-refresh401", 20).await;
    bank.registration().await;
    let status = bank.consent("accounts").await;
    assert_eq!(
        bank.authorise(&status, ObAuthoriseOptions::default()).await,
        200
    );
    let authorised = wait_ready(&bank.consents, "accounts", "True", "Authorised", 60)
        .await
        .status
        .expect("status");
    let first_expiry = authorised.token_expires_at.expect("expiry").0;
    bank.fake
        .inject(Endpoint::RefreshToken, Fault::Status(401), Some(1));
    let failing = wait_for(Duration::from_secs(40), || async {
        let st = bank.consents.get_status("accounts").await.ok()?.status?;
        st.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.reason != "Authorised")
            .then_some(st)
    })
    .await
    .expect("the refused refresh is reported");
    let reason = failing
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.reason.clone())
        .unwrap_or_default();
    assert!(
        reason == "RefreshFailing" || reason == "ProviderUnavailable",
        "{reason}"
    );
    assert!(
        failing.refresh_token_secret.is_some(),
        "the refresh token is kept"
    );
    // The next attempt (1 min later: a refusal backs off slowly) refreshes.
    let recovered = wait_for(Duration::from_secs(120), || async {
        let st = bank.consents.get_status("accounts").await.ok()?.status?;
        let ready = st
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True" && c.reason == "Authorised");
        let newer = st.token_expires_at.as_ref()?.0 > first_expiry;
        (ready && newer).then_some(())
    })
    .await;
    assert!(recovered.is_some(), "refreshing resumed after the refusal");
    bank.stop().await;
}

#[tokio::test]
async fn id_tokens_a_relying_party_must_refuse_spend_no_code() {
    let mut bank = bank("ob-idtokens", 300).await;
    bank.registration().await;
    let refused = [
        ("forged", IdTokenFault::ForgedSignature),
        ("alg-none", IdTokenFault::AlgNone),
        ("hmac", IdTokenFault::Hs256),
        ("issuer", IdTokenFault::WrongIssuer),
        ("audience", IdTokenFault::WrongAudience),
        ("expired", IdTokenFault::Expired),
        ("no-nonce", IdTokenFault::MissingNonce),
        ("nonce", IdTokenFault::WrongNonce),
        ("c-hash", IdTokenFault::WrongCHash),
        ("s-hash", IdTokenFault::WrongSHash),
        ("intent", IdTokenFault::WrongIntentId),
    ];
    let accepted = [
        ("aud-array", IdTokenFault::AudienceArray),
        ("no-at-hash", IdTokenFault::NoAtHash),
    ];
    for (name, _) in refused.iter().chain(accepted.iter()) {
        bank.create_consent(name).await;
    }
    for (name, fault) in &refused {
        let status = bank.awaiting(name).await;
        let options = ObAuthoriseOptions {
            id_token_fault: *fault,
            ..ObAuthoriseOptions::default()
        };
        assert_eq!(bank.authorise(&status, options).await, 200, "{name}");
        // Refused at once; a few seconds later a new authorisation URL is published.
        let st = wait_ready(&bank.consents, name, "False", "AuthorisationMismatch", 20)
            .await
            .status
            .expect("status");
        assert!(st.token_expires_at.is_none(), "{name}: a token was stored");
        assert!(
            secret_data(&bank.client, &bank.ns, &format!("{name}-token"))
                .await
                .is_none(),
            "{name}: a token Secret was written"
        );
        assert_eq!(
            bank.fake.calls().auth_code_token,
            0,
            "{name}: the code was spent"
        );
    }
    for (name, fault) in &accepted {
        let status = bank.awaiting(name).await;
        let options = ObAuthoriseOptions {
            id_token_fault: *fault,
            ..ObAuthoriseOptions::default()
        };
        assert_eq!(bank.authorise(&status, options).await, 200, "{name}");
        wait_ready(&bank.consents, name, "True", "Authorised", 30).await;
    }
    // Only the accepted ones spent their code.
    assert_eq!(bank.fake.calls().auth_code_token, accepted.len() as u64);
    bank.stop().await;
}

#[tokio::test]
async fn a_namespace_the_provider_does_not_allow_gets_no_call() {
    let mut bank = bank("ob-denied", 300).await;
    let other = namespace(&bank.client, "ob-elsewhere").await;
    create_secret(
        &bank.client,
        &other,
        "tpp-signature",
        &[("signature-certificate", "x")],
    )
    .await;
    // The operator watches its own namespace only; allow it to see the other one too.
    bank.stop().await;
    let op = Operator::start_watching(
        &bank.client,
        &[&bank.ns, &other],
        &format!("{}-bank", bank.ns),
    )
    .await;
    let object = objects::registration("intruder")
        .spec("providerRef", json!({"name": format!("{}-bank", bank.ns)}));
    let object: TppRegistration = serde_json::from_value(object.json()).expect("registration");
    let api = Api::<TppRegistration>::namespaced(bank.client.clone(), &other);
    api.create(&PostParams::default(), &object)
        .await
        .expect("create");
    let st = wait_ready(&api, "intruder", "False", "ProviderNotAllowed", 30)
        .await
        .status
        .expect("status");
    assert!(
        st.conditions[0]
            .message
            .contains("does not allow namespace"),
        "{}",
        st.conditions[0].message
    );
    assert_eq!(
        bank.fake.calls().total,
        bank.fake.calls().discovery + bank.fake.calls().jwks,
        "no call but discovery"
    );
    // Allowing the namespace (a label selector) lets it through without a restart.
    let patch = json!({"spec": {"allowedNamespaces": {"names": [bank.ns], "selector": {"matchLabels": {"kubernetes.io/metadata.name": other}}}}});
    Api::<tpp_operator::api::ClusterProvider>::all(bank.client.clone())
        .patch(
            &format!("{}-bank", bank.ns),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .expect("allow");
    // Without credentials the standard profile cannot register: a clear condition, no call.
    let st = wait_for(Duration::from_secs(30), || async {
        let st = api.get_status("intruder").await.ok()?.status?;
        let reason = st
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")?
            .reason
            .clone();
        (reason != "ProviderNotAllowed").then_some(reason)
    })
    .await;
    assert!(
        st.is_some(),
        "still refused after the provider allowed the namespace"
    );
    op.stop().await;
}
