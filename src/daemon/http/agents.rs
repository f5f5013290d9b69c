//! The node agents' door into the daemon: `POST /api/v1/agents/report` (a host's memory health,
//! shown on the status page) and `POST /api/v1/agents/alert` (one agent alert, put in the
//! daemon's durable outbox for its receivers), both behind a bearer token (`[agents]
//! token_file`); `GET /api/v1/agents` lists the last report of each host.
//!
//! An alert is answered 202 only once it is durably in the outbox, so the agent keeps it (and
//! retries) until then: nothing is lost between them. Without a token configured, agents are
//! refused with 403 and a message saying how to enable them.

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sipwatch_alerting::{Alert, Secret};
use tokio::sync::{mpsc, oneshot};

use super::HttpState;
use crate::daemon::model::AgentSummary;

/// What the HTTP layer hands to the state task.
#[derive(Debug)]
pub enum AgentMsg {
    Report(AgentSummary),
    /// A restart lease operation; replies with the answer to send.
    Lease(
        crate::daemon::leases::LeaseOp,
        oneshot::Sender<(StatusCode, serde_json::Value)>,
    ),
    /// Reply Ok once the alert is durably queued.
    Alert(Box<Alert>, oneshot::Sender<Result<(), String>>),
}

/// The agent intake: the expected token and the way to the state task.
#[derive(Clone)]
pub struct AgentIntake {
    pub token: Secret,
    pub tx: mpsc::Sender<AgentMsg>,
}

/// The largest report accepted (a host with many services and gauges stays far below).
pub const MAX_REPORT_BODY: usize = 1 << 20;
/// The largest alert accepted (one alert with its labels and description).
pub const MAX_ALERT_BODY: usize = 64 << 10;
/// The largest restart-lease request accepted (target, holder, TTL).
pub const MAX_LEASE_BODY: usize = 16 << 10;

fn authorized(intake: &AgentIntake, headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(given) = value.strip_prefix("Bearer ") else {
        return false;
    };
    constant_time_eq(given.trim().as_bytes(), intake.token.expose().as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks who is asking (from the headers alone), then reads at most `max` bytes of body. A
/// stranger's body is never read: the answer goes out and the connection closes.
pub(super) async fn check(
    state: &HttpState,
    request: Request,
    max: usize,
) -> Result<(AgentIntake, Bytes), Box<Response>> {
    let Some(intake) = state.agents.clone() else {
        return Err(Box::new(
            (
                StatusCode::FORBIDDEN,
                "agent reports are not enabled on this daemon: add [agents] token_file = \"...\" to its config\n",
            )
                .into_response(),
        ));
    };
    if !authorized(&intake, request.headers()) {
        return Err(Box::new(
            (
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (Authorization: Bearer <the daemon's [agents] token>)\n",
            )
                .into_response(),
        ));
    }
    match axum::body::to_bytes(request.into_body(), max).await {
        Ok(body) => Ok((intake, body)),
        Err(_) => Err(Box::new(
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body too large or cut short (at most {max} bytes)\n"),
            )
                .into_response(),
        )),
    }
}

pub(super) async fn post_report(State(state): State<HttpState>, request: Request) -> Response {
    let (intake, body) = match check(&state, request, MAX_REPORT_BODY).await {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let summary: AgentSummary = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("not an agent report: {e}\n"),
            )
                .into_response()
        }
    };
    match intake.tx.send(AgentMsg::Report(summary)).await {
        Ok(()) => (StatusCode::ACCEPTED, "accepted\n").into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "daemon is stopping\n").into_response(),
    }
}

pub(super) async fn post_alert(State(state): State<HttpState>, request: Request) -> Response {
    let (intake, body) = match check(&state, request, MAX_ALERT_BODY).await {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let alert: Alert = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("not an alert: {e}\n")).into_response(),
    };
    let (reply, answer) = oneshot::channel();
    if intake
        .tx
        .send(AgentMsg::Alert(Box::new(alert), reply))
        .await
        .is_err()
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "daemon is stopping\n").into_response();
    }
    match answer.await {
        Ok(Ok(())) => (StatusCode::ACCEPTED, "queued\n").into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "daemon is stopping\n").into_response(),
    }
}

/// `POST /api/v1/leases`, `POST /api/v1/leases/ID/renew`, `DELETE /api/v1/leases/ID`.
async fn lease_op(
    state: &HttpState,
    request: Request,
    op: impl FnOnce(&Bytes) -> Result<crate::daemon::leases::LeaseOp, String>,
) -> Response {
    let (intake, body) = match check(state, request, MAX_LEASE_BODY).await {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let op = match op(&body) {
        Ok(op) => op,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let (reply, answer) = oneshot::channel();
    if intake.tx.send(AgentMsg::Lease(op, reply)).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "daemon is stopping\n").into_response();
    }
    match answer.await {
        Ok((status, value)) => (status, axum::Json(value)).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "daemon is stopping\n").into_response(),
    }
}

pub(super) async fn lease_acquire(State(state): State<HttpState>, request: Request) -> Response {
    lease_op(&state, request, move |body| {
        serde_json::from_slice::<crate::agent::watchdog::leases::LeaseRequest>(body)
            .map(crate::daemon::leases::LeaseOp::Acquire)
            .map_err(|e| {
                format!(
                    "not a lease request: {e}; send {{\"target\", \"holder\", \"ttl_seconds\"}}"
                )
            })
    })
    .await
}

#[derive(serde::Deserialize)]
pub(super) struct RenewQuery {
    ttl_seconds: Option<f64>,
}

pub(super) async fn lease_renew(
    State(state): State<HttpState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    axum::extract::Query(q): axum::extract::Query<RenewQuery>,
    request: Request,
) -> Response {
    lease_op(&state, request, move |_| {
        Ok(crate::daemon::leases::LeaseOp::Renew {
            id,
            ttl_seconds: q.ttl_seconds.unwrap_or(600.0),
        })
    })
    .await
}

pub(super) async fn lease_release(
    State(state): State<HttpState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    request: Request,
) -> Response {
    lease_op(&state, request, move |_| {
        Ok(crate::daemon::leases::LeaseOp::Release { id })
    })
    .await
}

pub(super) async fn list(State(state): State<HttpState>) -> Response {
    let snap = state.snapshot.borrow().clone();
    axum::Json(serde_json::json!({ "agents": snap.agents })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
