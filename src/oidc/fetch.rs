//! The one network call of this module: a GET of a bank's JSON document (its discovery
//! document or its JWKS), read as a hostile bank could send it.

use url::Url;

/// Why a bank's document could not be fetched; messages carry no body.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The bank redirected; a redirect is never followed, since it could point anywhere.
    #[error("the bank answered with a redirect, which is not followed")]
    Redirected,
    /// The bank answered with an error status.
    #[error("the bank answered HTTP {0}")]
    Status(u16),
    /// The body is larger than the caller allows.
    #[error("the bank's answer is larger than {limit} bytes")]
    TooLarge {
        /// The cap in force.
        limit: usize,
    },
    /// The body is not JSON.
    #[error("the bank's answer is not JSON")]
    NotJson,
    /// No answer within the client's timeout.
    #[error("the request to the bank timed out")]
    Timeout,
    /// The connection failed or broke.
    #[error("could not reach the bank: {0}")]
    Transport(String),
}

/// GETs `url` and parses its body as JSON, reading at most `max_bytes`. The client should have
/// redirects off; a 3xx, or a response from another URL if it has not, is an error.
pub async fn fetch_json(
    http: &reqwest::Client,
    url: &Url,
    max_bytes: usize,
) -> Result<serde_json::Value, FetchError> {
    let mut response = http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(transport)?;
    let status = response.status();
    if status.is_redirection() || response.url() != url {
        return Err(FetchError::Redirected);
    }
    if !status.is_success() {
        return Err(FetchError::Status(status.as_u16()));
    }
    let too_large = || FetchError::TooLarge { limit: max_bytes };
    // A stated length over the cap is refused before any byte is read; an unstated or false
    // one is caught while streaming.
    if response
        .content_length()
        .is_some_and(|n| n > max_bytes as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|_| FetchError::NotJson)
}

fn transport(e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        return FetchError::Timeout;
    }
    let e = e.without_url();
    let mut cause: &(dyn std::error::Error + 'static) = &e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    FetchError::Transport(cause.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, Bytes};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::get;

    async fn bank() -> Url {
        let chunks = || {
            let chunk = Bytes::from(vec![b' '; 1024]);
            futures::stream::iter((0..100).map(move |_| Ok::<_, std::io::Error>(chunk.clone())))
        };
        let app = axum::Router::new()
            .route("/doc", get(|| async { r#"{"issuer":"x"}"# }))
            .route(
                "/moved",
                get(|| async { (StatusCode::FOUND, [("location", "/doc")]) }),
            )
            .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
            .route("/html", get(|| async { "<html>nope</html>" }))
            .route("/big", get(|| async { "x".repeat(4096) }))
            .route(
                "/stream",
                get(move || async move { Body::from_stream(chunks()).into_response() }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Url::parse(&format!("http://{addr}/")).unwrap()
    }

    fn client(redirects: bool) -> reqwest::Client {
        let policy = if redirects {
            reqwest::redirect::Policy::limited(3)
        } else {
            reqwest::redirect::Policy::none()
        };
        reqwest::Client::builder().redirect(policy).build().unwrap()
    }

    #[tokio::test]
    async fn fetches_json_and_refuses_everything_else() {
        let base = bank().await;
        let http = client(false);
        let at = |p: &str| base.join(p).unwrap();
        let doc = fetch_json(&http, &at("doc"), 1024).await.unwrap();
        assert_eq!(doc["issuer"], "x");
        assert!(matches!(
            fetch_json(&http, &at("moved"), 1024).await,
            Err(FetchError::Redirected)
        ));
        assert!(matches!(
            fetch_json(&http, &at("missing"), 1024).await,
            Err(FetchError::Status(404))
        ));
        assert!(matches!(
            fetch_json(&http, &at("html"), 1024).await,
            Err(FetchError::NotJson)
        ));
        assert!(matches!(
            fetch_json(&http, &at("big"), 1024).await,
            Err(FetchError::TooLarge { limit: 1024 })
        ));
        // No Content-Length: the cap holds while streaming.
        assert!(matches!(
            fetch_json(&http, &at("stream"), 10 * 1024).await,
            Err(FetchError::TooLarge { .. })
        ));
        // A client that follows redirects still does not get the other document.
        assert!(matches!(
            fetch_json(&client(true), &at("moved"), 1024).await,
            Err(FetchError::Redirected)
        ));
    }

    #[tokio::test]
    async fn an_unreachable_bank_is_a_transport_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = Url::parse(&format!("http://{addr}/jwks")).unwrap();
        let err = fetch_json(&client(false), &url, 1024).await.unwrap_err();
        assert!(matches!(err, FetchError::Transport(_)), "{err}");
    }
}
