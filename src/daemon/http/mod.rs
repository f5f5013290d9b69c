//! The daemon's HTTP surface: the router and its thin handlers.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /` | the status page for people ([`page`]; its alerting banner and silences: [`alerting_page`]) |
//! | `GET /api/v2/summary.json`, `status.json`, `components.json`, `incidents.json`, `incidents/unresolved.json`, `scheduled-maintenances.json`, `scheduled-maintenances/upcoming.json`, `scheduled-maintenances/active.json` | Atlassian Statuspage v2 shapes ([`statuspage`]) |
//! | `GET /history.atom` | incidents as an Atom 1.0 feed ([`atom`]) |
//! | `GET /metrics` | Prometheus text 0.0.4, or OpenMetrics when the scraper asks for it |
//! | `GET /healthz` | `200 ok` while the daemon runs, with the store's state in the body |
//! | `POST /api/v1/agents/report`, `POST /api/v1/agents/alert`, `GET /api/v1/agents` | node agents ([`agents`]; bearer token checked before the body is read; bodies capped at 1 MiB and 64 KiB) |
//! | `POST /api/v1/leases`, `POST /api/v1/leases/{id}/renew`, `DELETE /api/v1/leases/{id}` | the agents' restart leases ([`agents`] carries them to the state task, which keeps the book of `daemon::leases`) |
//! | `/api/v1/silences`, `/api/v1/notifications`, `/api/v1/acks`, `/ack` | the on-call's controls ([`alert_control`], its own table; merged into this router by `daemon::run`) |
//!
//! A new endpoint is one `.route` in [`router`] (or in [`alert_control::routes`] for an on-call
//! control), its handler in the file of its concern, and a row in this table.
//!
//! [`serve`] bounds what a peer can hold (connections, concurrent requests, header and idle
//! timeouts); GET routes never read a body.
//!
//! Handlers read the latest [`Snapshot`] from the watch channel (never wait for the state task),
//! run [`History`] queries on the blocking pool, and hand both to pure renderers. The page URL
//! in the feeds comes from the request's `Host` header (sanitized), so the feeds link back to the
//! address the reader used. Nothing here changes state.

pub mod agents;
pub mod alert_control;
pub mod alerting_page;
pub mod atom;
pub mod page;
pub mod serve;
pub mod statuspage;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use tokio::sync::watch;

use super::history::History;
use super::metrics::{Metrics, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE};
use super::model::{Incident, Snapshot, UnixTime};

/// How many incidents the JSON and Atom feeds list (Statuspage lists 50).
pub const FEED_INCIDENTS: usize = 50;
/// How far back the status page lists past incidents.
pub const RECENT_INCIDENTS_SECS: f64 = 7.0 * 86400.0;

/// What the handlers share. Cheap to clone (a watch receiver and two `Arc`s).
#[derive(Clone)]
pub struct HttpState {
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub metrics: Arc<Metrics>,
    pub history: Arc<dyn History>,
    /// The history the status page read last, reused for [`PAGE_HISTORY_TTL_SECS`].
    pub page_history: Arc<PageHistoryCache>,
    /// Node agents' reports and alerts; None: refused with 403.
    pub agents: Option<agents::AgentIntake>,
}

impl HttpState {
    fn current(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }
}

/// The daemon's routes (see the module table). Serve it with `axum::serve`.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/history.atom", get(history_atom))
        .route("/api/v2/summary.json", get(summary_json))
        .route("/api/v2/status.json", get(status_json))
        .route("/api/v2/components.json", get(components_json))
        .route("/api/v2/incidents.json", get(incidents_json))
        .route("/api/v2/incidents/unresolved.json", get(unresolved_json))
        .route(
            "/api/v2/scheduled-maintenances.json",
            get(|s, h| maintenances_json(s, h, statuspage::MaintenanceFilter::All)),
        )
        .route(
            "/api/v2/scheduled-maintenances/upcoming.json",
            get(|s, h| maintenances_json(s, h, statuspage::MaintenanceFilter::Upcoming)),
        )
        .route(
            "/api/v2/scheduled-maintenances/active.json",
            get(|s, h| maintenances_json(s, h, statuspage::MaintenanceFilter::Active)),
        )
        .route("/api/v1/agents", get(agents::list))
        .route(
            "/api/v1/agents/report",
            axum::routing::post(agents::post_report).layer(
                tower_http::limit::RequestBodyLimitLayer::new(agents::MAX_REPORT_BODY),
            ),
        )
        .route(
            "/api/v1/agents/alert",
            axum::routing::post(agents::post_alert).layer(
                tower_http::limit::RequestBodyLimitLayer::new(agents::MAX_ALERT_BODY),
            ),
        )
        .route(
            "/api/v1/leases",
            axum::routing::post(agents::lease_acquire).layer(
                tower_http::limit::RequestBodyLimitLayer::new(agents::MAX_LEASE_BODY),
            ),
        )
        .route(
            "/api/v1/leases/{id}/renew",
            axum::routing::post(agents::lease_renew).layer(
                tower_http::limit::RequestBodyLimitLayer::new(agents::MAX_LEASE_BODY),
            ),
        )
        .route(
            "/api/v1/leases/{id}",
            axum::routing::delete(agents::lease_release).layer(
                tower_http::limit::RequestBodyLimitLayer::new(agents::MAX_LEASE_BODY),
            ),
        )
        .fallback(not_found)
        .with_state(state)
}

async fn maintenances_json(
    State(state): State<HttpState>,
    headers: HeaderMap,
    filter: statuspage::MaintenanceFilter,
) -> Response {
    json_response(&statuspage::scheduled_maintenances_feed(
        &state.current(),
        &page_url(&headers),
        filter,
    ))
}

fn now() -> UnixTime {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `http://HOST/` from the request's Host header, or `http://localhost/` when it is missing or
/// holds anything but a host name, an IP address and a port.
fn page_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        })
        .unwrap_or("localhost");
    format!("http://{host}/")
}

/// Escapes text for HTML and XML (content and quoted attributes), dropping the control characters
/// XML 1.0 forbids. Every user-provided string (names, URIs, SIP reason phrases, errors) goes
/// through here before it reaches markup.
pub fn escape(s: &str) -> Cow<'_, str> {
    let needs = s.chars().any(|c| {
        matches!(c, '&' | '<' | '>' | '"' | '\'')
            || (c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
            || matches!(c, '\u{FFFE}' | '\u{FFFF}')
    });
    if !needs {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() || matches!(c, '\u{FFFE}' | '\u{FFFF}') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn with_type(content_type: &'static str, body: impl IntoResponse) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn json_response<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut resp = with_type("application/json; charset=utf-8", body);
            resp.headers_mut().insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "serializing a status feed failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not serialize the feed\n",
            )
                .into_response()
        }
    }
}

/// Runs a blocking History query on the blocking pool.
async fn blocking<T, F>(query: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, String> + Send + 'static,
{
    tokio::task::spawn_blocking(query)
        .await
        .map_err(|e| format!("history query did not finish: {e}"))?
}

/// Open incidents of the snapshot plus past ones from the history, newest first. A history failure
/// is logged and leaves only the open ones (a feed with the present beats no feed).
async fn feed_incidents(state: &HttpState, snapshot: &Snapshot) -> Vec<Incident> {
    let history = state.history.clone();
    let past = blocking(move || history.incidents(0.0, FEED_INCIDENTS))
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "incident history unavailable; feeding open incidents only");
            Vec::new()
        });
    statuspage::merge_incidents(&snapshot.open_incidents, &past, FEED_INCIDENTS)
}

async fn summary_json(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    json_response(&statuspage::summary(&state.current(), &page_url(&headers)))
}

async fn status_json(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    json_response(&statuspage::status_feed(
        &state.current(),
        &page_url(&headers),
    ))
}

async fn components_json(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    json_response(&statuspage::components_feed(
        &state.current(),
        &page_url(&headers),
    ))
}

async fn incidents_json(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let snapshot = state.current();
    let incidents = feed_incidents(&state, &snapshot).await;
    json_response(&statuspage::incidents_feed(
        &snapshot,
        &page_url(&headers),
        &incidents,
    ))
}

async fn unresolved_json(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let snapshot = state.current();
    let open: Vec<Incident> = snapshot
        .open_incidents
        .iter()
        .filter(|i| i.resolved_at.is_none())
        .cloned()
        .collect();
    json_response(&statuspage::incidents_feed(
        &snapshot,
        &page_url(&headers),
        &open,
    ))
}

async fn history_atom(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let snapshot = state.current();
    let incidents = feed_incidents(&state, &snapshot).await;
    let body = atom::render(&snapshot, &page_url(&headers), &incidents, now());
    with_type("application/atom+xml; charset=utf-8", body)
}

async fn metrics(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        with_type(OPENMETRICS_CONTENT_TYPE, state.metrics.encode_openmetrics())
    } else {
        with_type(PROMETHEUS_TEXT_CONTENT_TYPE, state.metrics.encode())
    }
}

async fn healthz(State(state): State<HttpState>) -> Response {
    let snapshot = state.current();
    let store = match &snapshot.store_error {
        None => "store: ok".to_owned(),
        Some(e) => format!("store: error: {e}"),
    };
    let age = (now() - snapshot.generated_at).max(0.0);
    let mut body = format!(
        "ok\n{store}\ntargets: {}\nsnapshot_age_seconds: {age:.0}\n",
        snapshot.targets.len()
    );
    for line in alerting_page::unhealthy_lines(&snapshot.alerting, now()) {
        body.push_str(&format!("alerting: unhealthy: {line}\n"));
    }
    with_type("text/plain; charset=utf-8", body)
}

/// How long the status page reuses the history it read (uptime over 24 h and 7 days, the RTT
/// chart by minute). The store adds to it every 5 s and the chart's points are minutes, while
/// reading it for 10,000 targets is two aggregate queries over every rollup row of the week (a
/// quarter of such a page's time). Node states and last probes come from the live snapshot on
/// every load; incidents are read on every load too.
pub const PAGE_HISTORY_TTL_SECS: f64 = 15.0;

/// The status page's last history, for the targets it was read for.
#[derive(Default)]
pub struct PageHistoryCache(std::sync::Mutex<Option<CachedHistory>>);

struct CachedHistory {
    at: UnixTime,
    /// A fingerprint of the target names it was read for: a reload starts afresh.
    names: u64,
    targets: Arc<HashMap<String, page::TargetHistory>>,
}

impl PageHistoryCache {
    fn get(&self, names: u64, now: UnixTime) -> Option<Arc<HashMap<String, page::TargetHistory>>> {
        let kept = self.0.lock().ok()?;
        let c = kept.as_ref()?;
        let fresh = now >= c.at && now - c.at < PAGE_HISTORY_TTL_SECS;
        (c.names == names && fresh).then(|| c.targets.clone())
    }

    /// Keeps `targets` unless the store failed for any of them (an error is read again).
    fn put(&self, names: u64, at: UnixTime, targets: &Arc<HashMap<String, page::TargetHistory>>) {
        let failed = targets
            .values()
            .any(|h| h.uptime_24h.is_err() || h.uptime_7d.is_err() || h.rtt_24h.is_err());
        if let Ok(mut kept) = self.0.lock() {
            *kept = (!failed).then(|| CachedHistory {
                at,
                names,
                targets: targets.clone(),
            });
        }
    }
}

async fn status_page(State(state): State<HttpState>) -> Response {
    let snapshot = state.current();
    let now = now();
    let history = state.history.clone();
    let names: Vec<String> = snapshot.targets.iter().map(|t| t.name.clone()).collect();
    let fingerprint = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        names.hash(&mut h);
        h.finish()
    };
    let cached = state.page_history.get(fingerprint, now);
    let cache = state.page_history.clone();
    let gathered = blocking(move || {
        let targets = match cached {
            Some(t) => t,
            None => {
                let t = Arc::new(history.page_history(&names, now));
                cache.put(fingerprint, now, &t);
                t
            }
        };
        let recent = history.incidents(now - RECENT_INCIDENTS_SECS, 100);
        Ok((targets, recent))
    })
    .await;
    let data = match gathered {
        Ok((targets, recent_incidents)) => page::PageData {
            now,
            targets,
            recent_incidents,
        },
        Err(e) => page::PageData {
            now,
            targets: Default::default(),
            recent_incidents: Err(e),
        },
    };
    with_type("text/html; charset=utf-8", page::render(&snapshot, &data))
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found; try /, /api/v2/summary.json, /history.atom, /metrics or /healthz\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page's history is reused for the same targets within the TTL, and read again after
    /// it, for another set of targets, or when the store failed.
    #[test]
    fn page_history_is_reused_for_a_few_seconds_only() {
        let ok = page::TargetHistory {
            uptime_24h: Ok(Some(1.0)),
            uptime_7d: Ok(None),
            rtt_24h: Ok(vec![(60.0, 1.5)]),
        };
        let good = Arc::new(HashMap::from([("edge".to_string(), ok.clone())]));
        let cache = PageHistoryCache::default();
        assert!(cache.get(1, 1000.0).is_none());
        cache.put(1, 1000.0, &good);
        let hit = cache
            .get(1, 1000.0 + PAGE_HISTORY_TTL_SECS - 0.5)
            .expect("within the TTL");
        assert!(Arc::ptr_eq(&hit, &good));
        assert!(
            cache.get(1, 1000.0 + PAGE_HISTORY_TTL_SECS).is_none(),
            "after the TTL"
        );
        assert!(cache.get(2, 1001.0).is_none(), "other targets");
        assert!(cache.get(1, 999.0).is_none(), "the clock went back");
        let failed = Arc::new(HashMap::from([(
            "edge".to_string(),
            page::TargetHistory {
                uptime_7d: Err("database is locked".into()),
                ..ok
            },
        )]));
        cache.put(1, 1002.0, &failed);
        assert!(cache.get(1, 1002.0).is_none(), "an error is read again");
    }

    #[test]
    fn escape_covers_markup_and_control_characters() {
        assert_eq!(escape("plain"), "plain");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape(r#"<a href="x">&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("bell\u{7}\ttab"), "bell\u{FFFD}\ttab");
    }

    #[test]
    fn page_url_accepts_hosts_only() {
        let mut h = HeaderMap::new();
        assert_eq!(page_url(&h), "http://localhost/");
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert_eq!(page_url(&h), "http://127.0.0.1:8080/");
        h.insert(header::HOST, HeaderValue::from_static("[::1]:80"));
        assert_eq!(page_url(&h), "http://[::1]:80/");
        h.insert(header::HOST, HeaderValue::from_static("evil\"><script>"));
        assert_eq!(page_url(&h), "http://localhost/");
    }
}
