//! The accept loop of both listeners, written on hyper directly because `axum::serve` builds
//! hyper without a timer: no header-read timeout, no bound on a half-sent request head, no cap
//! on open connections. Here a client may hold a connection only while it makes progress:
//! the request head must arrive within `header_read_timeout` and fit in `max_head_bytes`, a
//! response it does not read is dropped after `write_stall`, and no connection outlives
//! `max_lifetime`. Connections beyond the caps are closed at accept, before any byte is read.

use super::limits::{canonical, Cidr};
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue};
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tower::Service;

/// What one listener allows a connection.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// The whole request head must arrive within this time (also the keep-alive idle time).
    pub header_read_timeout: Duration,
    /// Longest request head (request line and headers); at least 8 KiB.
    pub max_head_bytes: usize,
    /// Connections open at once; more are closed at accept.
    pub max_connections: usize,
    /// Connections open at once from one address (trusted proxies are exempt: every client
    /// behind them shares their address).
    pub max_connections_per_client: usize,
    /// A response write that makes no progress for this long ends the connection.
    pub write_stall: Duration,
    /// After this, the next response closes the connection; twice this, it is dropped.
    pub max_lifetime: Duration,
    /// On shutdown, open connections get this long to finish.
    pub shutdown_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(5),
            max_head_bytes: 16 * 1024,
            max_connections: 1024,
            max_connections_per_client: 32,
            write_stall: Duration::from_secs(10),
            max_lifetime: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Smallest read buffer hyper accepts.
const MIN_HEAD_BYTES: usize = 8 * 1024;

/// Serves `router` on `listener` until `shutdown` resolves; connections still open then get
/// `limits.shutdown_grace` to finish.
pub async fn serve_on(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    trusted_proxies: Arc<[Cidr]>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "HTTP server listening");
    let head = limits.max_head_bytes.max(MIN_HEAD_BYTES);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(head)
        .max_buf_size(head)
        .keep_alive(true);
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_client = PerClient::default();
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let ip = canonical(peer.ip());
        let exempt = trusted_proxies.iter().any(|c| c.contains(ip));
        let Some(client_slot) = per_client.take(ip, limits.max_connections_per_client, exempt)
        else {
            continue;
        };
        let Ok(slot) = open.clone().try_acquire_owned() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let started = Instant::now();
        let soft_lifetime = limits.max_lifetime;
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            // What `into_make_service_with_connect_info` would insert: the direct peer.
            request.extensions_mut().insert(ConnectInfo(peer));
            let response = router.clone().call(request);
            async move {
                let mut response = response.await?;
                if started.elapsed() >= soft_lifetime {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, Infallible>(response)
            }
        });
        let io = TokioIo::new(WriteStall::new(stream, limits.write_stall));
        let connection = graceful.watch(http.serve_connection(io, service));
        let hard_lifetime = limits.max_lifetime * 2;
        tokio::spawn(async move {
            let _slots = (slot, client_slot);
            match tokio::time::timeout(hard_lifetime, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "connection ended"),
                Err(_) => tracing::debug!("connection dropped at its maximum lifetime"),
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::info!("connections still open at the end of the shutdown grace period were dropped");
        }
    }
    Ok(())
}

/// Open connections per direct peer address. At most one entry per open connection, so its
/// size is bounded by the listener's connection cap.
#[derive(Clone, Default)]
struct PerClient(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One connection of one address; released when dropped.
struct ClientSlot(Option<(PerClient, IpAddr)>);

impl PerClient {
    fn take(&self, ip: IpAddr, max: usize, exempt: bool) -> Option<ClientSlot> {
        if exempt {
            return Some(ClientSlot(None));
        }
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(ClientSlot(Some((self.clone(), ip))))
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Some((clients, ip)) = self.0.take() {
            let mut open = clients.0.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = open.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    open.remove(&ip);
                }
            }
        }
    }
}

/// A socket whose writes fail once one makes no progress for `limit`: a client that stops
/// reading a response cannot hold its connection (and the response's buffers) forever. Hyper
/// has no write timeout of its own.
struct WriteStall<S> {
    inner: S,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    armed: bool,
}

impl<S> WriteStall<S> {
    fn new(inner: S, limit: Duration) -> Self {
        WriteStall {
            inner,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
            armed: false,
        }
    }

    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if !self.armed {
            self.armed = true;
            let deadline = tokio::time::Instant::now() + self.limit;
            self.timer.as_mut().reset(deadline);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<T>(
        &mut self,
        result: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(r) => {
                self.armed = false;
                Poll::Ready(r)
            }
            Poll::Pending => self.pending(cx),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStall<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStall<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progressed(result, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progressed(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.progressed(result, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.progressed(result, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_gets_a_bounded_share_and_proxies_are_exempt() {
        let clients = PerClient::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let first = clients.take(ip, 2, false).expect("first");
        let _second = clients.take(ip, 2, false).expect("second");
        assert!(clients.take(ip, 2, false).is_none());
        drop(first);
        assert!(clients.take(ip, 2, false).is_some());
        for _ in 0..10 {
            assert!(clients.take(ip, 2, true).is_some());
        }
    }
}
