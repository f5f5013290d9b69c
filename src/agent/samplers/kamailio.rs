//! Kamailio's own view of its memory, through its JSON-RPC over HTTP (`xhttp` + `jsonrpcs`):
//! `core.shmmem` for the shared pool (`used`, `real_used`, `free`, `max_used`, `total`) and
//! `pkg.stats` (needs `kex.so`) for each process's private pool.
//!
//! The shared pool is where Kamailio leaks hurt (htable entries, dialogs, transactions never
//! freed): when it is exhausted the log says `no more shm memory` and requests fail. Its `total`
//! (the `-m` size) is the limit found. For the private pools the value is the largest (`aggregate =
//! "max"`, limit: that process's pool size) or the sum over processes (`"sum"`, limit: the summed
//! pool sizes).

use std::time::Duration;

use serde_json::{json, Value};
use toml::Spanned;

use super::http_json::{as_number, fetch_json};
pub use super::kind::Aggregate;
use super::kind::{BuildContext, GaugeCheck, GaugeKind, RawGauge};
use crate::agent::sampler::{Reading, SampleContext, SampleError, SampleFuture, Sampler};

/// Which Kamailio pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    /// `core.shmmem`.
    Shared,
    /// `pkg.stats`, folded over processes.
    Private(Aggregate),
}

/// The value and limit from a JSON-RPC answer.
pub fn read_answer(pool: Pool, field: &str, answer: &Value) -> Result<(f64, Option<f64>), String> {
    if let Some(error) = answer.get("error") {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        let hint = if pool != Pool::Shared && message.contains("Not Found") {
            " (pkg.stats is provided by kex.so: loadmodule \"kex.so\")"
        } else {
            ""
        };
        return Err(format!("Kamailio answered an RPC error: {message}{hint}"));
    }
    let result = answer
        .get("result")
        .ok_or("the JSON-RPC answer has no \"result\"")?;
    let get = |obj: &Value, key: &str| {
        obj.get(key)
            .and_then(as_number)
            .ok_or_else(|| format!("the RPC result has no number \"{key}\""))
    };
    match pool {
        Pool::Shared => Ok((get(result, field)?, get(result, "total").ok())),
        Pool::Private(aggregate) => {
            let processes = result
                .as_array()
                .ok_or("pkg.stats did not return a list of processes")?;
            if processes.is_empty() {
                return Err("pkg.stats returned no process".to_owned());
            }
            let mut figures = Vec::new();
            for p in processes {
                figures.push((get(p, field)?, get(p, "total_size").ok()));
            }
            Ok(match aggregate {
                Aggregate::Max => {
                    figures.into_iter().fold(
                        (f64::MIN, None),
                        |best, f| if f.0 > best.0 { f } else { best },
                    )
                }
                Aggregate::Sum => {
                    let value = figures.iter().map(|f| f.0).sum();
                    let limit = figures.iter().map(|f| f.1).sum::<Option<f64>>();
                    (value, limit)
                }
            })
        }
    }
}

/// Samples Kamailio's memory over JSON-RPC.
pub struct KamailioSampler {
    client: reqwest::Client,
    url: String,
    pool: Pool,
    field: String,
    timeout: Duration,
    next_id: u64,
}

impl KamailioSampler {
    pub fn new(
        client: reqwest::Client,
        url: String,
        pool: Pool,
        field: String,
        timeout: Duration,
    ) -> Self {
        KamailioSampler {
            client,
            url,
            pool,
            field,
            timeout,
            next_id: 1,
        }
    }
}

impl Sampler for KamailioSampler {
    fn sample<'a>(&'a mut self, _ctx: &'a SampleContext) -> SampleFuture<'a> {
        Box::pin(async move {
            let method = match self.pool {
                Pool::Shared => "core.shmmem",
                Pool::Private(_) => "pkg.stats",
            };
            let request = json!({"jsonrpc": "2.0", "method": method, "id": self.next_id});
            self.next_id += 1;
            let answer = fetch_json(&self.client, &self.url, Some(&request), self.timeout).await?;
            let (value, limit) = read_answer(self.pool, &self.field, &answer)
                .map_err(|e| SampleError::new(format!("{method} at {}: {e}", self.url)))?;
            Ok(Reading {
                value: Some(value),
                found_limit: limit,
                alerts: Vec::new(),
            })
        })
    }
}

/// `kind = "kamailio_shm"` (the shared pool through JSON-RPC `core.shmmem`; limit found from
/// `total`) or `kind = "kamailio_pkg"` (the private pools through `pkg.stats`, folded by
/// `aggregate`; limit found from `total_size`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KamailioConfig {
    pub url: String,
    pub pool: Pool,
    pub field: String,
    pub timeout: Duration,
}

impl GaugeKind for KamailioConfig {
    const NAMES: &'static [&'static str] = &["kamailio_shm", "kamailio_pkg"];
    const KEYS: &'static [&'static str] = &["url", "field", "timeout", "aggregate"];
    const UNIT: &'static str = "bytes";

    fn check(raw: &RawGauge, c: &mut GaugeCheck<'_, '_>) -> Option<Self> {
        let url = c.url(
            &raw.url,
            "url = \"http://127.0.0.1:5060/RPC\" (xhttp + jsonrpcs)",
        );
        let (pool, allowed): (Pool, &[&str]) = if c.kind == "kamailio_shm" {
            (
                Pool::Shared,
                &["used", "real_used", "free", "max_used", "total"],
            )
        } else {
            let aggregate = raw.aggregate.unwrap_or(Aggregate::Max);
            (Pool::Private(aggregate), &["used", "real_used", "free"])
        };
        let field = match &raw.field {
            None => "real_used".to_owned(),
            Some(f) if allowed.contains(&f.get_ref().as_str()) => f.get_ref().clone(),
            Some(f) => {
                let message = format!(
                    "field = \"{}\" is not a {} figure; use one of {}",
                    f.get_ref(),
                    c.kind,
                    allowed.join(", ")
                );
                c.error(Spanned::span(f), message);
                "real_used".to_owned()
            }
        };
        if pool == Pool::Shared && raw.aggregate.is_some() {
            c.stray("aggregate", c.span.clone());
        }
        Some(KamailioConfig {
            url: url?,
            pool,
            field,
            timeout: c.timeout,
        })
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Box<dyn Sampler> {
        Box::new(KamailioSampler::new(
            ctx.client.clone(),
            self.url.clone(),
            self.pool,
            self.field.clone(),
            self.timeout,
        ))
    }

    fn name(&self) -> &'static str {
        match self.pool {
            Pool::Shared => "kamailio_shm",
            Pool::Private(_) => "kamailio_pkg",
        }
    }

    fn timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shmmem_answer() {
        let answer = json!({"jsonrpc": "2.0", "result": {"total": 67108864, "free": 66475752, "used": 393280,
            "real_used": 633112, "max_used": 633112, "fragments": 1}, "id": 1});
        assert_eq!(
            read_answer(Pool::Shared, "real_used", &answer),
            Ok((633112.0, Some(67108864.0)))
        );
    }

    #[test]
    fn pkg_stats_max_and_sum() {
        let answer = json!({"result": [
            {"pid": 1, "real_used": 100.0, "total_size": 1000},
            {"pid": 2, "real_used": 300.0, "total_size": 1000}]});
        assert_eq!(
            read_answer(Pool::Private(Aggregate::Max), "real_used", &answer),
            Ok((300.0, Some(1000.0)))
        );
        assert_eq!(
            read_answer(Pool::Private(Aggregate::Sum), "real_used", &answer),
            Ok((400.0, Some(2000.0)))
        );
        let missing = json!({"error": {"code": 500, "message": "Method Not Found"}});
        assert!(
            read_answer(Pool::Private(Aggregate::Max), "real_used", &missing)
                .unwrap_err()
                .contains("kex.so")
        );
    }
}
