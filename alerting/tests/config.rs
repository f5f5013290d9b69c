//! `build`: every problem of every receiver at once, each naming the receiver, the field and the
//! fix; secrets never appear in errors or in the debug output of built notifiers.

mod common;

use common::*;
use sipwatch_alerting::build;

#[test]
fn every_problem_is_reported_at_once_with_receiver_field_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.key");
    let configs = receivers(&format!(
        r#"
        [[alerting.receiver]]
        kind = "email"
        name = "noc-mail"
        smtp = "mail.example.net"
        from = "not an address"
        to = []

        [[alerting.receiver]]
        kind = "pagerduty"
        name = "oncall"
        routing_key_file = "{missing}"

        [[alerting.receiver]]
        kind = "pagerduty"
        name = "oncall"
        routing_key = "INL1NE-R0UTING-KEY"
        url = "ftp://events.example/"

        [[alerting.receiver]]
        kind = "alertmanager"
        name = "am"
        url = []

        [[alerting.receiver]]
        kind = "webhook"
        name = "hook"
        url = "https://user:pa55w0rd@hooks.example/x"
        bearer_token_file = "{missing}"
        "#,
        missing = missing.display()
    ));
    let err = build(&configs).unwrap_err();
    let text = err.to_string();
    let expect = [
        ("noc-mail", "smtp", "\"mail.example.net:25\""),
        ("noc-mail", "from", "is not a mail address"),
        ("noc-mail", "to", "at least one recipient"),
        ("oncall", "routing_key_file", "cannot read secret file"),
        ("oncall", "name", "must be unique"),
        ("oncall", "url", "use http:// or https://"),
        ("am", "url", "empty list"),
        ("hook", "bearer_token_file", "correct the path"),
    ];
    for (receiver, field, hint) in expect {
        assert!(
            err.problems
                .iter()
                .any(|p| p.receiver == receiver && p.field == field && p.message.contains(hint)),
            "no problem for {receiver}.{field} with {hint:?} in:\n{text}"
        );
    }
    assert_eq!(err.problems.len(), expect.len(), "{text}");
    assert!(
        text.starts_with("8 problems in the alert receivers:"),
        "{text}"
    );
    assert!(
        text.contains("[[alerting.receiver]] \"oncall\" (kind = \"pagerduty\"): url:"),
        "{text}"
    );
    assert!(!text.contains("INL1NE-R0UTING-KEY"), "{text}");
    assert!(!text.contains("pa55w0rd"), "{text}");
}

#[test]
fn built_notifiers_never_show_secrets_in_debug() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = [
        ("smtp.pw", "SMTP-PA55W0RD"),
        ("pd.key", "PD-R0UTING-KEY"),
        ("og.key", "0PSGENIE-KEY"),
        ("hook.token", "H00K-T0KEN"),
    ];
    for (file, value) in secrets {
        write_file(dir.path(), file, &format!("{value}\n"));
    }
    let d = dir.path().display();
    let configs = receivers(&format!(
        r#"
        [[alerting.receiver]]
        kind = "email"
        name = "mail"
        smtp = "127.0.0.1:25"
        starttls = true
        from = "a@example.net"
        to = ["b@example.net"]
        username = "sipwatch"
        password_file = "{d}/smtp.pw"

        [[alerting.receiver]]
        kind = "pagerduty"
        name = "pd"
        routing_key_file = "{d}/pd.key"

        [[alerting.receiver]]
        kind = "opsgenie"
        name = "og"
        api_key_file = "{d}/og.key"

        [[alerting.receiver]]
        kind = "webhook"
        name = "hook"
        url = "https://bot:URL-PA55@hooks.example/x?token=URL-T0KEN"
        bearer_token_file = "{d}/hook.token"

        [[alerting.receiver]]
        kind = "alertmanager"
        name = "am"
        url = ["http://am1:9093", "http://am2:9093"]
        "#
    ));
    let notifiers = build(&configs).unwrap();
    let names: Vec<(&str, &str)> = notifiers.iter().map(|n| (n.name(), n.kind())).collect();
    assert_eq!(
        names,
        [
            ("mail", "email"),
            ("pd", "pagerduty"),
            ("og", "opsgenie"),
            ("hook", "webhook"),
            ("am", "alertmanager")
        ]
    );
    let shown = format!("{notifiers:?} {configs:?}");
    for (_, value) in secrets {
        assert!(!shown.contains(value), "{value} leaked: {shown}");
    }
    assert!(!shown.contains("URL-PA55"), "{shown}");
    assert!(!shown.contains("URL-T0KEN"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
}
