//! The on-call's controls over HTTP: silences, delivered and failed notifications, test sends.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /api/v1/silences` | every known silence: `{"silences": [...]}` |
//! | `POST /api/v1/silences` | add one: `{"matchers": ["target=fe-2"], "duration": "2h", "comment": "..."}` (or `starts`/`ends` in unix seconds or RFC 3339) |
//! | `DELETE /api/v1/silences/{id}` | expire one now |
//! | `GET /api/v1/notifications?state=failed&limit=N` | the newest notifications (`pending`, `delivered`, `failed`, `dropped`) |
//! | `POST /api/v1/notifications/test` | `{"receivers": [...]}` (empty: all): a test send, answered with the outcome per receiver |
//! | `POST /api/v1/acks` | `{"key": "sipwatch/notify/...", "by": "alice"}`: acknowledge a notification (escalation stops) |
//! | `GET /ack?key&exp&sig` | the one-click link from a notification: a page with an "Acknowledge" button |
//! | `POST /ack` | that button; the link's signature (HMAC with the API token) and expiry are checked |
//!
//! Every `/api/v1` route needs `Authorization: Bearer TOKEN` with the token from `[alerting]
//! api_token_file`; it is checked before the body is read, and bodies are capped. Without a
//! token configured the routes answer 403 with how to enable them. Silences are changed by the
//! state task (the only owner of the alert control); this file only carries requests to it.

use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use sipwatch_alerting::matcher::Matcher;
use sipwatch_alerting::silence::Silence;
use sipwatch_alerting::{Outbox, Secret};
use tokio::sync::{mpsc, oneshot};

use crate::daemon::model::SilenceView;

/// Largest request body accepted (a silence or a test request is a few hundred bytes).
const MAX_BODY: usize = 64 * 1024;
/// How long a test send may take before its outcome is reported as "no answer".
const TEST_DEADLINE: Duration = Duration::from_secs(30);

/// Requests for the state task.
#[derive(Debug)]
pub enum ControlMsg {
    AddSilence(Box<Silence>, oneshot::Sender<Result<SilenceView, String>>),
    ExpireSilence(String, oneshot::Sender<Result<SilenceView, String>>),
    ListSilences(oneshot::Sender<Vec<SilenceView>>),
    Ack {
        key: String,
        by: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// What the routes share.
#[derive(Clone)]
pub struct ControlApi {
    pub token: Option<Secret>,
    pub tx: mpsc::Sender<ControlMsg>,
    pub outbox: Option<Outbox>,
    /// `source` of test notifications.
    pub source: String,
    pub url: Option<String>,
}

/// The routes above, to merge into the daemon's router.
pub fn routes(api: ControlApi) -> Router {
    Router::new()
        .route("/api/v1/silences", get(list_silences).post(add_silence))
        .route("/api/v1/silences/{id}", delete(expire_silence))
        .route("/api/v1/notifications", get(notifications))
        .route("/api/v1/notifications/test", post(test_send))
        .route("/api/v1/acks", post(ack_api))
        .route("/ack", get(ack_page).post(ack_form))
        .with_state(api)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut message = message.into();
    message.push('\n');
    (status, message).into_response()
}

fn authorize(api: &ControlApi, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(token) = &api.token else {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "the alert control API is not enabled on this daemon: add [alerting] \
             api_token_file = \"/etc/sipwatch/api.token\" to its config",
        )));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    let expected = token.expose().as_bytes();
    let same = given.len() == expected.len()
        && given
            .as_bytes()
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (Authorization: Bearer <the token in [alerting] \
             api_token_file>)",
        )))
    }
}

/// The token first, then the body (capped).
async fn authorized_body(
    api: &ControlApi,
    req: Request,
) -> Result<axum::body::Bytes, Box<Response>> {
    authorize(api, req.headers())?;
    axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| {
            Box::new(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over {MAX_BODY} bytes"),
            ))
        })
}

async fn ask<T>(
    api: &ControlApi,
    make: impl FnOnce(oneshot::Sender<T>) -> ControlMsg,
) -> Result<T, Box<Response>> {
    let (reply, answer) = oneshot::channel();
    if api.tx.send(make(reply)).await.is_err() {
        return Err(Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "daemon is stopping",
        )));
    }
    answer
        .await
        .map_err(|_| Box::new(error(StatusCode::SERVICE_UNAVAILABLE, "daemon is stopping")))
}

async fn list_silences(State(api): State<ControlApi>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&api, &headers) {
        return *r;
    }
    match ask(&api, ControlMsg::ListSilences).await {
        Ok(list) => Json(serde_json::json!({ "silences": list })).into_response(),
        Err(r) => *r,
    }
}

/// A time as unix seconds or RFC 3339.
#[derive(Deserialize)]
#[serde(untagged)]
enum When {
    Unix(f64),
    Text(String),
}

impl When {
    fn unix(&self, field: &str) -> Result<f64, String> {
        match self {
            When::Unix(t) => Ok(*t),
            When::Text(text) => chrono::DateTime::parse_from_rfc3339(text)
                .map(|t| t.timestamp_millis() as f64 / 1000.0)
                .map_err(|e| format!("{field} {text:?} is not unix seconds nor RFC 3339 ({e})")),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSilence {
    matchers: Vec<String>,
    starts: Option<When>,
    ends: Option<When>,
    /// `"2h"`: ends this long after it starts.
    duration: Option<String>,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    created_by: Option<String>,
}

fn new_silence(body: &[u8], now: f64) -> Result<Silence, String> {
    let req: NewSilence = serde_json::from_slice(body).map_err(|e| {
        format!(
            "not a silence: {e}; send {{\"matchers\": [\"target=fe-2\"], \"duration\": \"2h\", \
             \"comment\": \"...\"}}"
        )
    })?;
    let matchers = req
        .matchers
        .iter()
        .map(|m| Matcher::parse(m))
        .collect::<Result<Vec<_>, _>>()?;
    let starts = match &req.starts {
        Some(w) => w.unix("starts")?,
        None => now,
    };
    let ends =
        match (&req.ends, &req.duration) {
            (Some(w), None) => w.unix("ends")?,
            (None, Some(d)) => starts + sipwatch_alerting::duration::parse_seconds(d)?,
            _ => return Err(
                "give either \"ends\" (a time) or \"duration\" (e.g. \"2h\"), not both or neither"
                    .into(),
            ),
        };
    Ok(Silence {
        id: format!("{:016x}", rand::random::<u64>()),
        matchers,
        starts,
        ends,
        comment: req.comment,
        created_by: req.created_by.unwrap_or_else(|| "api".into()),
    })
}

async fn add_silence(State(api): State<ControlApi>, req: Request) -> Response {
    let body = match authorized_body(&api, req).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let silence = match new_silence(&body, super::now()) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match ask(&api, |reply| {
        ControlMsg::AddSilence(Box::new(silence), reply)
    })
    .await
    {
        Ok(Ok(view)) => (
            StatusCode::CREATED,
            Json(serde_json::json!({ "silence": view })),
        )
            .into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e),
        Err(r) => *r,
    }
}

async fn expire_silence(
    State(api): State<ControlApi>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&api, &headers) {
        return *r;
    }
    match ask(&api, |reply| ControlMsg::ExpireSilence(id, reply)).await {
        Ok(Ok(view)) => Json(serde_json::json!({ "silence": view })).into_response(),
        Ok(Err(e)) => error(StatusCode::NOT_FOUND, e),
        Err(r) => *r,
    }
}

#[derive(Deserialize)]
struct NotificationQuery {
    state: Option<String>,
    limit: Option<usize>,
}

async fn notifications(
    State(api): State<ControlApi>,
    headers: HeaderMap,
    Query(q): Query<NotificationQuery>,
) -> Response {
    if let Err(r) = authorize(&api, &headers) {
        return *r;
    }
    if let Some(state) = &q.state {
        if !["pending", "delivered", "failed", "dropped"].contains(&state.as_str()) {
            return error(
                StatusCode::BAD_REQUEST,
                format!("state {state:?}: use pending, delivered, failed or dropped"),
            );
        }
    }
    let Some(outbox) = api.outbox.clone() else {
        return Json(serde_json::json!({ "notifications": [] })).into_response();
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let state = q.state.clone();
    let found =
        tokio::task::spawn_blocking(move || outbox.deliveries(state.as_deref(), limit)).await;
    match found {
        Ok(Ok(list)) => Json(serde_json::json!({ "notifications": list })).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TestRequest {
    #[serde(default)]
    receivers: Vec<String>,
}

async fn test_send(State(api): State<ControlApi>, req: Request) -> Response {
    let body = match authorized_body(&api, req).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let req: TestRequest = if body.is_empty() {
        TestRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("not a test request: {e}; send {{\"receivers\": [\"mail\"]}}"),
                )
            }
        }
    };
    let Some(outbox) = api.outbox.clone() else {
        return error(
            StatusCode::CONFLICT,
            "this daemon has no [[alerting.receiver]]; configure one first",
        );
    };
    let configured: Vec<String> = outbox.receivers().into_iter().map(|(n, _)| n).collect();
    let receivers = if req.receivers.is_empty() {
        configured.clone()
    } else {
        req.receivers.clone()
    };
    if let Some(unknown) = receivers.iter().find(|r| !configured.contains(r)) {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "no receiver is named {unknown:?}; the receivers are: {}",
                configured.join(", ")
            ),
        );
    }
    let alert = sipwatch_alerting::test_send::test_alert(&api.source, api.url.as_deref());
    match sipwatch_alerting::test_send::send_and_wait(&outbox, &alert, &receivers, TEST_DEADLINE)
        .await
    {
        Ok(results) => Json(test_results_json(&results)).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    key: String,
    #[serde(default)]
    by: Option<String>,
}

async fn ack_api(State(api): State<ControlApi>, req: Request) -> Response {
    let body = match authorized_body(&api, req).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let req: AckRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("not an acknowledgement: {e}; send {{\"key\": \"sipwatch/notify/...\"}}"),
            )
        }
    };
    let by = req.by.unwrap_or_else(|| "api".into());
    match ask(&api, |reply| ControlMsg::Ack {
        key: req.key.clone(),
        by,
        reply,
    })
    .await
    {
        Ok(Ok(())) => Json(serde_json::json!({ "acknowledged": req.key })).into_response(),
        Ok(Err(e)) => error(StatusCode::NOT_FOUND, e),
        Err(r) => *r,
    }
}

#[derive(Deserialize)]
struct AckLink {
    key: String,
    exp: u64,
    sig: String,
}

fn check_link(api: &ControlApi, link: &AckLink) -> Result<(), Box<Response>> {
    let Some(token) = &api.token else {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "acknowledgement links are not enabled: the daemon has no [alerting] api_token_file",
        )));
    };
    if crate::daemon::paging::ack_link_valid(
        token.expose(),
        &link.key,
        link.exp,
        &link.sig,
        super::now(),
    ) {
        Ok(())
    } else {
        Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "this acknowledgement link is invalid or expired (links work for 24 hours); use \
             `sipwatch alert ack KEY` instead",
        )))
    }
}

/// The page behind the link: a button, so that mail scanners following links acknowledge
/// nothing.
async fn ack_page(State(api): State<ControlApi>, Query(link): Query<AckLink>) -> Response {
    if let Err(r) = check_link(&api, &link) {
        return *r;
    }
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Acknowledge</title></head>\
         <body><h1>Acknowledge this notification?</h1><p><code>{key}</code></p>\
         <p>Escalation to the next level stops; the resolve is still sent.</p>\
         <form method=\"post\" action=\"ack\">\
         <input type=\"hidden\" name=\"key\" value=\"{key}\">\
         <input type=\"hidden\" name=\"exp\" value=\"{exp}\">\
         <input type=\"hidden\" name=\"sig\" value=\"{sig}\">\
         <button type=\"submit\">Acknowledge</button></form></body></html>",
        key = super::escape(&link.key),
        exp = link.exp,
        sig = super::escape(&link.sig),
    );
    (
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

async fn ack_form(State(api): State<ControlApi>, req: Request) -> Response {
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "form too large"),
    };
    let mut key = None;
    let mut exp = None;
    let mut sig = None;
    for (name, value) in form_urlencoded(&body) {
        match name.as_str() {
            "key" => key = Some(value),
            "exp" => exp = value.parse().ok(),
            "sig" => sig = Some(value),
            _ => {}
        }
    }
    let (Some(key), Some(exp), Some(sig)) = (key, exp, sig) else {
        return error(StatusCode::BAD_REQUEST, "the form needs key, exp and sig");
    };
    let link = AckLink { key, exp, sig };
    if let Err(r) = check_link(&api, &link) {
        return *r;
    }
    match ask(&api, |reply| ControlMsg::Ack {
        key: link.key.clone(),
        by: "link".into(),
        reply,
    })
    .await
    {
        Ok(Ok(())) => (
            [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
            format!(
                "<!doctype html><html><body><h1>Acknowledged</h1><p><code>{}</code></p></body></html>",
                super::escape(&link.key)
            ),
        )
            .into_response(),
        Ok(Err(e)) => error(StatusCode::NOT_FOUND, e),
        Err(r) => *r,
    }
}

/// `application/x-www-form-urlencoded` pairs.
fn form_urlencoded(body: &[u8]) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(body)))
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// `{"results": [{"receiver", "outcome": "delivered"|"failed", "error"}]}`.
pub fn test_results_json(results: &[(String, Result<(), String>)]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = results
        .iter()
        .map(|(receiver, outcome)| match outcome {
            Ok(()) => serde_json::json!({"receiver": receiver, "outcome": "delivered"}),
            Err(e) => serde_json::json!({"receiver": receiver, "outcome": "failed", "error": e}),
        })
        .collect();
    serde_json::json!({ "results": list })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silences_take_a_duration_or_an_end() {
        let s = new_silence(
            br#"{"matchers": ["target=fe-2"], "duration": "2h", "comment": "swap"}"#,
            100.0,
        )
        .unwrap();
        assert_eq!((s.starts, s.ends), (100.0, 7300.0));
        assert_eq!(s.created_by, "api");
        let s = new_silence(
            br#"{"matchers": ["target=fe-2"], "starts": "2026-01-01T00:00:00Z", "ends": 1767229200}"#,
            0.0,
        )
        .unwrap();
        assert_eq!((s.starts, s.ends), (1767225600.0, 1767229200.0));
        let e = new_silence(br#"{"matchers": ["target=fe-2"]}"#, 0.0).unwrap_err();
        assert!(e.contains("duration"), "{e}");
        let e = new_silence(br#"{"matchers": ["target"], "duration": "1h"}"#, 0.0).unwrap_err();
        assert!(e.contains("label=value"), "{e}");
    }
}
