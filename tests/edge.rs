//! The public listener of the operator process against slow clients: hundreds of sockets that
//! never finish their request head, and a client that never reads its answer, hold neither
//! memory nor the listener; a normal JWKS fetch and a callback are answered meanwhile.

mod common;

use common::process::OperatorProcess;
use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// Sockets that each send an endless request head: 400, from 50 addresses.
const SLOW_SOCKETS: usize = 400;
const SLOW_ADDRESSES: u8 = 50;

/// Opens a connection from `source` and trickles a request head that never ends (one header
/// meant to grow to 200 kB, 1 KiB every 400 ms, slow enough to stay under any size cap) until
/// the server closes it or `until`.
async fn endless_head(source: &str, target: SocketAddr, until: Instant) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{source}:0").parse().expect("source"))
        .expect("bind");
    let Ok(mut stream) = socket.connect(target).await else {
        return;
    };
    if stream
        .write_all(b"GET /jwks HTTP/1.1\r\nHost: tpp.example\r\nX-Pad: ")
        .await
        .is_err()
    {
        return;
    }
    let chunk = vec![b'a'; 1024];
    for _ in 0..200 {
        if Instant::now() >= until || stream.write_all(&chunk).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
}

#[tokio::test]
async fn slow_clients_hold_no_memory_and_others_are_served() {
    let client = client().await;
    let ns = namespace(&client, "edge").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut operator = OperatorProcess::start(
        dir.path(),
        &kubeconfig_path(),
        &ns,
        &ns,
        "edge",
        "https://bank.example",
    );
    let http = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().expect("ip"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let ready = wait_for(Duration::from_secs(60), || async {
        let r = http
            .get(format!("{}/readyz", operator.ops))
            .send()
            .await
            .ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    assert!(ready.is_some(), "not ready; logs:\n{}", operator.logs());
    // Warm up the listener and the JWKS path before measuring idle memory.
    for _ in 0..3 {
        let _ = http.get(format!("{}/jwks", operator.public)).send().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = operator.rss_kib();

    let target: SocketAddr = operator
        .public
        .trim_start_matches("http://")
        .parse()
        .expect("public address");
    let until = Instant::now() + Duration::from_secs(8);
    let attackers: Vec<_> = (0..SLOW_SOCKETS)
        .map(|i| {
            let source = format!("127.0.1.{}", 1 + (i as u8 % SLOW_ADDRESSES));
            tokio::spawn(async move { endless_head(&source, target, until).await })
        })
        .collect();

    // A client that asks for the JWKS and never reads the answer.
    let mut never_reads = tokio::net::TcpStream::connect(target)
        .await
        .expect("connect");
    never_reads
        .write_all(b"GET /jwks HTTP/1.1\r\nHost: tpp.example\r\n\r\n")
        .await
        .expect("request");

    let mut peak = idle;
    let mut served = Vec::new();
    while Instant::now() < until {
        peak = peak.max(operator.rss_kib());
        if served.len() < 6 {
            // The provider fetching keys and a customer coming back, from their own address.
            let jwks = http.get(format!("{}/jwks", operator.public)).send().await;
            let callback = http
                .get(format!("{}/callback?state=x&code=y", operator.public))
                .send()
                .await;
            served.push((
                jwks.map(|r| r.status().as_u16()).unwrap_or(0),
                callback.map(|r| r.status().as_u16()).unwrap_or(0),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for a in attackers {
        let _ = a.await;
    }
    let grown_mib = (peak.saturating_sub(idle)) as f64 / 1024.0;
    println!(
        "RSS idle {:.1} MiB, peak with {SLOW_SOCKETS} slow sockets {:.1} MiB (+{grown_mib:.1} MiB); normal requests: {served:?}",
        idle as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    // Before the connection limits, 400 such sockets grew the process by about 85 MiB.
    assert!(
        grown_mib < 16.0,
        "{SLOW_SOCKETS} slow sockets grew the operator by {grown_mib:.1} MiB"
    );
    assert!(
        served
            .iter()
            .all(|&(jwks, callback)| jwks == 200 && callback == 400),
        "the provider's and the customer's requests were not all answered: {served:?}"
    );
    // The client that never read its answer was let go: its connection is closed (EOF after
    // whatever the kernel had buffered).
    let mut sink = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(15), never_reads.read_to_end(&mut sink)).await;
    assert!(
        matches!(closed, Ok(Ok(_)) | Ok(Err(_))),
        "a client that does not read still holds its connection"
    );
    assert_eq!(operator.terminate().code(), Some(0), "{}", operator.logs());
}
