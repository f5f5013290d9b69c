//! Serving the router to strangers: every resource a peer can hold is bounded.
//!
//! `axum::serve` accepts every connection, never times out a slow header or an idle keep-alive
//! connection, and lets a handler read a body before anything checked who sent it. Here the
//! accept loop and hyper's HTTP/1 connection settings are ours:
//!
//! | limit | value | what happens past it |
//! | --- | --- | --- |
//! | open connections | [`Limits::max_connections`] (512) | a new connection is accepted and closed at once (the listener never stalls, no file-descriptor exhaustion) |
//! | requests handled at once | [`Limits::max_concurrent_requests`] (64) | requests wait for a slot (tower `GlobalConcurrencyLimit`) |
//! | time to send the request head, and idle time between keep-alive requests | [`Limits::header_timeout`] (10 s) | the connection is closed (hyper `header_read_timeout`) |
//! | one request, body included | [`Limits::request_timeout`] (30 s) | `408` (tower-http `Timeout`) |
//! | request head / read buffer | [`Limits::max_buf`] (64 KiB) | `431` / connection closed (hyper `max_buf_size`) |
//!
//! Bodies are capped per route where the routes are defined ([`super::router`]); the agent
//! routes check the bearer token before they read a byte of the body. Accept errors (such as
//! "too many open files") are logged at most once per second and back off for 50 ms instead of
//! spinning. It deliberately does not do TLS (put a reverse proxy in front for that) or HTTP/2.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// The HTTP limits (see the module table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_concurrent_requests: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub max_buf: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 512,
            max_concurrent_requests: 64,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_buf: 64 * 1024,
        }
    }
}

/// Counters of what the limits turned away, for metrics and tests.
#[derive(Debug, Default)]
pub struct Refusals {
    /// Connections closed at once because `max_connections` were open.
    pub connections: AtomicU64,
    /// Accept errors (e.g. out of file descriptors).
    pub accept_errors: AtomicU64,
}

/// Logs at most once per `every`; counts what it swallowed.
struct RateLimitedLog {
    every: Duration,
    last: Option<Instant>,
    swallowed: u64,
}

impl RateLimitedLog {
    fn new(every: Duration) -> Self {
        RateLimitedLog {
            every,
            last: None,
            swallowed: 0,
        }
    }

    /// `Some(n)`: log now, `n` similar messages were swallowed since the last one.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|l| now.duration_since(l) < self.every)
        {
            self.swallowed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.swallowed))
    }
}

/// Wraps the router in the request-level limits.
pub fn limited(app: Router, limits: Limits) -> Router {
    app.layer(tower::limit::GlobalConcurrencyLimitLayer::new(
        limits.max_concurrent_requests.max(1),
    ))
    .layer(tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    ))
}

/// Serves `app` on `listener` with `limits` until `shutdown` turns true; connections still open
/// then get `grace` to finish their request.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    refusals: Arc<Refusals>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = limited(app, limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut refused_log = RateLimitedLog::new(Duration::from_secs(1));
    let mut error_log = RateLimitedLog::new(Duration::from_secs(1));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = async { let _ = shutdown.wait_for(|v| *v).await; } => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                refusals.accept_errors.fetch_add(1, Ordering::Relaxed);
                if let Some(swallowed) = error_log.admit(Instant::now()) {
                    tracing::error!(error = %e, similar_since_last = swallowed,
                        "cannot accept an HTTP connection (out of file descriptors? raise \
                         LimitNOFILE or lower the load); retrying in 50 ms");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refusals.connections.fetch_add(1, Ordering::Relaxed);
            if let Some(swallowed) = refused_log.admit(Instant::now()) {
                tracing::warn!(%peer, limit = limits.max_connections, refused_since_last = swallowed,
                    "too many open HTTP connections; closing new ones until some end");
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let mut stop = shutdown.clone();
        connections.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_buf.max(8192))
                .max_header_size(limits.max_buf.max(8192))
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                    }
                }
                _ = async { let _ = stop.wait_for(|v| *v).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn.as_mut()).await;
                }
            }
            drop(slot);
        });
    }
    // Let open connections finish (each bounded by its own grace period).
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_rate_limited() {
        let mut log = RateLimitedLog::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(log.admit(t0), Some(0));
        assert_eq!(log.admit(t0 + Duration::from_millis(10)), None);
        assert_eq!(log.admit(t0 + Duration::from_millis(20)), None);
        assert_eq!(log.admit(t0 + Duration::from_millis(1100)), Some(2));
    }
}
