//! `sipwatch leak analyze` as a user runs it: usage errors exit 2 as its help says, `--plot x.png`
//! is refused (the plot is SVG) rather than writing SVG into a .png, and `--limit` reads sizes as
//! the agent config does (`GB` is 10^9, `GiB` 2^30).

mod common;

use common::{describe, sipwatch};

fn series(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("flat.csv");
    let mut text = String::from("timestamp,value\n");
    for i in 0..200 {
        // A sawtooth between 500 MB and 600 MB (a cache filling and flushing): no leak.
        let value = 500_000_000 + (i % 50) * 2_000_000;
        text.push_str(&format!("{},{value}\n", 1_700_000_000 + i * 60));
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn usage_errors_exit_2_as_the_help_says() {
    let help = sipwatch(&["leak", "analyze", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("2 bad input"), "{text}");
    for args in [
        &["leak", "analyze"][..],
        &["leak", "analyze", "x.csv", "--limit", "lots"],
        &["leak", "analyze", "x.csv", "--no-such-flag"],
    ] {
        let out = sipwatch(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
    }
}

#[test]
fn a_png_plot_is_refused_and_svg_has_round_ticks() {
    let dir = tempfile::tempdir().unwrap();
    let csv = series(dir.path());
    let png = dir.path().join("plot.png");
    let out = sipwatch(&[
        "leak",
        "analyze",
        csv.to_str().unwrap(),
        "--plot",
        png.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(".svg"),
        "{}",
        describe(&out)
    );
    assert!(!png.exists(), "nothing written under a .png name");

    let svg = dir.path().join("plot.svg");
    let out = sipwatch(&[
        "leak",
        "analyze",
        csv.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = std::fs::read_to_string(&svg).unwrap();
    // Value ticks: round MiB values, none negative for a gauge that never is.
    let labels: Vec<&str> = text
        .split("text-anchor=\"end\">")
        .skip(1)
        .filter_map(|s| s.split('<').next())
        .filter(|l| l.ends_with("MiB"))
        .collect();
    assert!(labels.len() >= 3, "{labels:?}");
    let values: Vec<f64> = labels
        .iter()
        .map(|l| l.trim_end_matches(" MiB").parse().expect("numeric tick"))
        .collect();
    for n in &values {
        assert!(*n >= 0.0, "{labels:?}");
        assert_eq!(n.fract(), 0.0, "round ticks: {labels:?}");
    }
    let step = values[1] - values[0];
    assert!(
        [1.0, 2.0, 5.0, 10.0, 20.0, 50.0].contains(&step),
        "{labels:?}"
    );
    assert!(values.windows(2).all(|w| w[1] - w[0] == step), "{labels:?}");
}

#[test]
fn limit_sizes_say_gb_or_gib() {
    let dir = tempfile::tempdir().unwrap();
    let csv = series(dir.path());
    let limit = |l: &str| {
        let out = sipwatch(&[
            "leak",
            "analyze",
            csv.to_str().unwrap(),
            "--json",
            "--limit",
            l,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["limit"].as_f64().unwrap()
    };
    assert_eq!(limit("1GB"), 1e9);
    assert_eq!(limit("1GiB"), 1073741824.0);
}
