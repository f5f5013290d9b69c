//! Shared helpers for the scenario tests: alerts, fast outbox options, a running dispatcher, and a
//! recording HTTP receiver that answers a scripted list of statuses; the workspace's shared test
//! support (free ports, waits with a deadline, real programs or a failure that says which package
//! to install) is re-exported.
#![allow(dead_code)]

pub use sipwatch_test_support::*;

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use sipwatch_alerting::{Alert, AlertStatus, Outbox, OutboxOptions, RetryPolicy, Severity};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub fn alert(key: &str, severity: Severity) -> Alert {
    Alert {
        key: key.to_string(),
        status: AlertStatus::Firing,
        severity,
        summary: format!("{key} is broken"),
        description: format!("details about {key}"),
        source: "host1".to_string(),
        labels: BTreeMap::from([("service".to_string(), "kamailio".to_string())]),
        at: unix_now(),
        url: Some("http://status.example/sipwatch".to_string()),
    }
}

/// Back-off short enough for tests, with the production shape.
pub fn fast_options() -> OutboxOptions {
    OutboxOptions {
        retry: RetryPolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(300),
            permanent_attempts: 3,
        },
        ..OutboxOptions::default()
    }
}

/// An outbox in `dir` for the receivers of `toml_text` (written as a user would, under
/// `[alerting]`), with the fast back-off, and its dispatcher running.
pub fn dispatching(dir: &Path, toml_text: &str) -> (Outbox, Running) {
    let notifiers = sipwatch_alerting::build(&receivers(toml_text))
        .unwrap_or_else(|e| panic!("test receivers rejected: {e}"));
    open_outbox(dir, notifiers)
}

/// An outbox in `dir` for these notifiers, with the fast back-off, and its dispatcher running.
pub fn open_outbox(
    dir: &Path,
    notifiers: Vec<Arc<dyn sipwatch_alerting::Notifier>>,
) -> (Outbox, Running) {
    let outbox = Outbox::open(dir.join("outbox.db"), notifiers, fast_options())
        .unwrap_or_else(|e| panic!("cannot open the test outbox: {e}"));
    let running = Running::start(&outbox);
    (outbox, running)
}

/// One HTTP receiver (`pagerduty`, `opsgenie`, `webhook`) posting to a local [`Recorder`], with
/// its outbox dispatching.
pub struct HttpReceiver {
    pub recorder: Recorder,
    pub outbox: Outbox,
    pub running: Running,
    pub dir: tempfile::TempDir,
}

impl HttpReceiver {
    /// A receiver of `kind` named `name` whose `url` is the recorder's `path`; the recorder
    /// answers `status`. `secret` is a key written to a file the receiver reads (its config key,
    /// the file's content); `extra` more config lines.
    pub async fn start(
        kind: &str,
        name: &str,
        status: u16,
        path: &str,
        secret: Option<(&str, &str)>,
        extra: &str,
    ) -> HttpReceiver {
        let dir = tempfile::tempdir().expect("a temp dir");
        let recorder = Recorder::start(status).await;
        let secret = secret
            .map(|(key, value)| {
                let file = write_file(dir.path(), &format!("{name}.secret"), value);
                format!("{key} = \"{}\"", file.display())
            })
            .unwrap_or_default();
        let (outbox, running) = dispatching(
            dir.path(),
            &format!(
                "[[alerting.receiver]]\nkind = \"{kind}\"\nname = \"{name}\"\nurl = \"{}{path}\"\n{secret}\n{extra}\n",
                recorder.base
            ),
        );
        HttpReceiver {
            recorder,
            outbox,
            running,
            dir,
        }
    }
}

/// A running dispatcher and the switch that stops it.
pub struct Running {
    pub stop: watch::Sender<bool>,
    pub task: JoinHandle<()>,
}

impl Running {
    pub fn start(outbox: &Outbox) -> Running {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(outbox.clone().run(stopped));
        Running { stop, task }
    }

    /// Asks the dispatcher to stop and waits until it has.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("dispatcher stops within 30 s")
            .expect("dispatcher task does not panic");
    }
}

/// A status to answer, with an optional body.
type Answer = (u16, Option<String>);

/// One request as the recording receiver saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
    /// The body as received (signatures are computed over these bytes).
    pub raw: String,
    /// The status we answered.
    pub answered: u16,
}

/// A local HTTP receiver that records every request and answers the next scripted status
/// (then `default` once the script is used up).
#[derive(Clone)]
pub struct Recorder {
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    rules: Arc<Mutex<Vec<(String, Answer)>>>,
    default: u16,
    pub base: String,
}

impl Recorder {
    pub async fn start(default: u16) -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind recorder");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let recorder = Recorder {
            requests: Arc::new(Mutex::new(Vec::new())),
            script: Arc::new(Mutex::new(VecDeque::new())),
            rules: Arc::new(Mutex::new(Vec::new())),
            default,
            base,
        };
        let state = recorder.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { state.answer(method, uri, headers, body) }
            },
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        recorder
    }

    /// The next requests get these statuses, in order (with an optional body).
    pub fn script(&self, statuses: &[(u16, Option<&str>)]) {
        let mut script = self.script.lock().unwrap();
        for (status, body) in statuses {
            script.push_back((*status, body.map(str::to_string)));
        }
    }

    /// Requests whose body contains `needle` always get `status` (before the script applies).
    pub fn always_answer(&self, needle: &str, status: u16, body: Option<&str>) {
        self.rules
            .lock()
            .unwrap()
            .push((needle.to_string(), (status, body.map(str::to_string))));
    }

    fn answer(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> impl IntoResponse {
        let text = String::from_utf8_lossy(&body);
        let ruled = self
            .rules
            .lock()
            .unwrap()
            .iter()
            .find(|(needle, _)| text.contains(needle.as_str()))
            .map(|(_, answer)| answer.clone());
        let (status, reply) = ruled.unwrap_or_else(|| {
            self.script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or((self.default, None))
        });
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        self.requests.lock().unwrap().push(Recorded {
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            headers,
            body: json,
            raw: text.to_string(),
            answered: status,
        });
        let mut response = (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            reply.unwrap_or_else(|| "{\"status\":\"ok\"}".to_string()),
        )
            .into_response();
        if status == 429 {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        response
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Requests answered with a 2xx.
    pub fn accepted(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .collect()
    }
}

/// Writes `content` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, content: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write test file");
    path
}

/// Parses receiver tables written as a user would, under `[alerting]`.
pub fn receivers(toml_text: &str) -> Vec<sipwatch_alerting::ReceiverConfig> {
    #[derive(serde::Deserialize)]
    struct Doc {
        alerting: Alerting,
    }
    #[derive(serde::Deserialize)]
    struct Alerting {
        receiver: Vec<sipwatch_alerting::ReceiverConfig>,
    }
    let doc: Doc = toml::from_str(toml_text).unwrap_or_else(|e| panic!("test config: {e}"));
    doc.alerting.receiver
}

/// Log lines captured from `tracing`, for checks that secrets never reach the log.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The process-wide capture: installed as the global subscriber on first use. Global rather
    /// than per-thread because tracing caches per-callsite interest across threads, so a
    /// thread-local subscriber can miss events first seen by another test's thread. Only one test
    /// per test binary should assert on it, with markers unique to that test.
    pub fn global() -> LogCapture {
        static CAPTURE: std::sync::OnceLock<LogCapture> = std::sync::OnceLock::new();
        CAPTURE
            .get_or_init(|| {
                let capture = LogCapture::default();
                let writer = capture.clone();
                let subscriber = tracing_subscriber::fmt()
                    .with_max_level(tracing::Level::DEBUG)
                    .with_ansi(false)
                    .with_writer(move || writer.clone())
                    .finish();
                tracing::subscriber::set_global_default(subscriber)
                    .expect("no other global subscriber in tests");
                capture
            })
            .clone()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
