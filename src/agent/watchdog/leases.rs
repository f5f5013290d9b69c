//! The agent's side of quorum leases: asks the daemon (`[daemon] url`, bearer token) for a restart
//! lease on the target that stands for the service, keeps it renewed while the restart runs, and
//! releases it after the verification passed. The daemon decides (its `leases` module, behind `POST /api/v1/leases`).
//!
//! `POST /api/v1/leases` `{"target","holder","ttl_seconds"}` -> 200 `{"id","target","expires_at"}`
//! or 409 `{"why","reason"}` (`why`: `quorum`, `lease`, `unknown_target`);
//! `POST /api/v1/leases/ID/renew`; `DELETE /api/v1/leases/ID`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::agent::config::DaemonLink;

/// A granted lease.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub id: String,
    pub target: String,
    pub expires_at: f64,
}

/// Why a lease was not granted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    /// `quorum`, `lease`, `unknown_target`, `daemon` (unreachable).
    pub why: String,
    pub reason: String,
}

/// `POST /api/v1/leases`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseRequest {
    pub target: String,
    pub holder: String,
    pub ttl_seconds: f64,
}

/// Talks to the daemon.
#[derive(Clone)]
pub struct LeaseClient {
    link: DaemonLink,
    host: String,
    client: reqwest::Client,
}

impl LeaseClient {
    pub fn new(link: &DaemonLink, host: &str) -> anyhow::Result<Self> {
        Ok(LeaseClient {
            link: link.clone(),
            host: host.to_owned(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }

    /// Asks for a lease on `target` for `service`.
    pub async fn acquire(
        &self,
        target: &str,
        service: &str,
        ttl: Duration,
    ) -> Result<Lease, Refusal> {
        let request = LeaseRequest {
            target: target.to_owned(),
            holder: format!("{}/{service}", self.host),
            ttl_seconds: ttl.as_secs_f64(),
        };
        let daemon = |e: String| Refusal {
            why: "daemon".into(),
            reason: self.link.token.scrub(&e),
        };
        let answer = self
            .client
            .post(format!("{}/api/v1/leases", self.link.url))
            .bearer_auth(self.link.token.expose())
            .json(&request)
            .send()
            .await
            .map_err(|e| daemon(format!("cannot reach the daemon {}: {e}", self.link.url)))?;
        let status = answer.status();
        if status.is_success() {
            return answer
                .json()
                .await
                .map_err(|e| daemon(format!("odd lease answer: {e}")));
        }
        if status.as_u16() == 409 {
            return Err(answer.json().await.unwrap_or_else(|e| Refusal {
                why: "lease".into(),
                reason: format!("refused, with an odd answer: {e}"),
            }));
        }
        let text = answer.text().await.unwrap_or_default();
        Err(daemon(format!(
            "the daemon answered {status}: {}",
            text.trim()
        )))
    }

    /// Renews a lease for another `ttl`.
    pub async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<(), String> {
        let r = self
            .client
            .post(format!(
                "{}/api/v1/leases/{}/renew?ttl_seconds={}",
                self.link.url,
                lease.id,
                ttl.as_secs_f64()
            ))
            .bearer_auth(self.link.token.expose())
            .send()
            .await
            .map_err(|e| self.link.token.scrub(&e.to_string()))?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(format!("renewal refused: {}", r.status()))
        }
    }

    /// Releases a lease.
    pub async fn release(&self, lease: &Lease) -> Result<(), String> {
        let r = self
            .client
            .delete(format!("{}/api/v1/leases/{}", self.link.url, lease.id))
            .bearer_auth(self.link.token.expose())
            .send()
            .await
            .map_err(|e| self.link.token.scrub(&e.to_string()))?;
        if r.status().is_success() || r.status().as_u16() == 404 {
            Ok(())
        } else {
            Err(format!("release refused: {}", r.status()))
        }
    }

    /// Renews `lease` every third of `ttl` until the returned task is aborted.
    pub fn keep_renewed(&self, lease: Lease, ttl: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                if let Err(e) = this.renew(&lease, ttl).await {
                    tracing::warn!(
                        target = lease.target,
                        error = e,
                        "cannot renew the restart lease"
                    );
                }
            }
        })
    }
}
