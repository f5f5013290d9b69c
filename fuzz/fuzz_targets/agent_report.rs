//! Feeds arbitrary bytes to what the daemon does with the body of an authenticated
//! `POST /api/v1/agents/report` or `/api/v1/agents/alert`: JSON decoding, then the status page
//! that shows the report. None may panic, and nothing the agent sent reaches the page unescaped.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use sipwatch::daemon::http::page::{render, PageData};
use sipwatch::daemon::model::{AgentSummary, Snapshot};

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<sipwatch_alerting::Alert>(data);
    let Ok(summary) = serde_json::from_slice::<AgentSummary>(data) else {
        return;
    };
    let snapshot = Snapshot {
        page_name: "fuzz".into(),
        agents: vec![summary],
        ..Snapshot::default()
    };
    let data = PageData {
        now: 0.0,
        targets: HashMap::new(),
        recent_incidents: Ok(Vec::new()),
    };
    let html = render(&snapshot, &data);
    assert!(!html.contains("<script"), "agent text reached the page unescaped");
});
