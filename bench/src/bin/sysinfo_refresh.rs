//! Times a sysinfo full process-table refresh on this host, the way a naive agent would sample
//! every tick: prints the median and p90 of N refreshes in milliseconds, one line of JSON.
//! Used by bench/agent_overhead.py for comparison with sipwatch's per-tick cost.

use std::time::Instant;

use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut sys = match System::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sysinfo: {e}");
            std::process::exit(1);
        }
    };
    sys.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        ProcessRefreshKind::everything(),
    );
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        sys.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::everything(),
        );
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{{\"processes\":{},\"median_ms\":{:.3},\"p90_ms\":{:.3}}}",
        sys.processes().len(),
        times[times.len() / 2],
        times[times.len() * 9 / 10]
    );
}
