//! `http://` and `https://` webhooks: one POST per source transaction, its lines as the body
//! (`application/x-ndjson`), in stream order, each sent only after the one before it
//! succeeded. A transaction bigger than `--max-body` goes in parts, in order.
//!
//! Headers say what a body is, so a receiver can drop a repeat: `Idempotency-Key`
//! (`COMMITLSN-PART`, the same on every retry and after a restart), `Weir-Commit-Lsn`,
//! `Weir-Part` (from 1) and `Weir-Last-Part` (`true` on a transaction's last). The
//! `Authorization` header comes from `WEIR_SINK_AUTHORIZATION`, never from the command line.
//!
//! A 2xx is delivered. A 5xx, 408, 429, a timeout or a failed connection is retried with
//! exponential backoff (from 0.25 s, doubling to 30 s, or the server's `Retry-After` seconds),
//! for up to `--retry-for`; any other status stops weir-sink with the status and the start of
//! the response's body, as a receiver that refuses a body will refuse it again. With
//! `--state DIR` the end of the last delivered transaction is recorded there (see [`state`]),
//! at most `--sync-interval` after its POST succeeded: a restart skips what it names, and
//! resends at most what came after it (with the same idempotency keys).

use super::state::Recorder;
use super::{SinkOptions, Target};
use crate::pg::lsn::Lsn;
use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use std::time::{Duration, Instant};

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// Where the `Authorization` header's value comes from.
pub const AUTHORIZATION_ENV: &str = "WEIR_SINK_AUTHORIZATION";

pub struct Webhook {
    uri: hyper::Uri,
    authorization: Option<String>,
    client: Client<Https, Full<Bytes>>,
    rt: tokio::runtime::Runtime,
    /// The transaction being gathered: its commit LSN, its body so far, parts already sent.
    commit: Lsn,
    body: Vec<u8>,
    parts: u32,
    max_body: usize,
    timeout: Duration,
    retry_for: Duration,
    quiet: bool,
    /// The end of the last transaction delivered, and where it is recorded.
    delivered: Lsn,
    state: Recorder,
}

/// What one attempt got back.
struct Reply {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Bytes,
}

impl Webhook {
    pub fn open(o: &SinkOptions) -> Result<Webhook> {
        let uri: hyper::Uri = o
            .url
            .parse()
            .with_context(|| format!("{}: not a URL", o.url))?;
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let tls = if uri.scheme_str() == Some("https") {
            builder
                .with_provider_and_native_roots(provider)
                .context("loading the system's CA certificates")?
        } else {
            // Plain http: the TLS half is never used, so it needs no roots.
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            builder.with_tls_config(config)
        };
        let connector = tls.https_or_http().enable_http1().build();
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let state = Recorder::open(o.state.as_deref(), o.sync_interval)?;
        Ok(Webhook {
            uri,
            authorization: std::env::var(AUTHORIZATION_ENV).ok(),
            client,
            rt,
            commit: Lsn::ZERO,
            body: Vec::with_capacity(1 << 16),
            parts: 0,
            max_body: o.max_body.max(1),
            timeout: o.timeout,
            retry_for: o.retry_for,
            quiet: o.quiet,
            delivered: state.recorded(),
            state,
        })
    }

    /// POSTs the body gathered so far as the transaction's next part, retrying as the module
    /// says until it is delivered.
    fn post(&mut self, last: bool) -> Result<()> {
        self.parts += 1;
        let body = Bytes::from(std::mem::take(&mut self.body));
        let started = Instant::now();
        let mut backoff = Duration::from_millis(250);
        loop {
            let mut delay = backoff;
            let why = match self.rt.block_on(self.attempt(body.clone(), last)) {
                Ok(r) if r.status.is_success() => return Ok(()),
                Ok(r) if retryable(r.status) => {
                    delay = r.retry_after.unwrap_or(backoff);
                    format!("{}", r.status)
                }
                Ok(r) => bail!(
                    "POST {}: {} ({}), stopping: the receiver refused transaction {} part {}",
                    self.uri,
                    r.status,
                    excerpt(&r.body),
                    self.commit,
                    self.parts
                ),
                Err(e) => format!("{e:#}"),
            };
            if started.elapsed() + delay > self.retry_for {
                bail!(
                    "POST {}: still failing after {} s of retries: {why}",
                    self.uri,
                    started.elapsed().as_secs()
                );
            }
            if !self.quiet {
                eprintln!(
                    "weir-sink: POST {}: {why}; retrying in {:.2} s",
                    self.uri,
                    delay.as_secs_f64()
                );
            }
            std::thread::sleep(delay);
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    async fn attempt(&self, body: Bytes, last: bool) -> Result<Reply> {
        let mut req = hyper::Request::post(self.uri.clone())
            .header("content-type", "application/x-ndjson")
            .header("idempotency-key", format!("{}-{}", self.commit, self.parts))
            .header("weir-commit-lsn", self.commit.to_string())
            .header("weir-part", self.parts)
            .header("weir-last-part", if last { "true" } else { "false" });
        if let Some(a) = &self.authorization {
            req = req.header("authorization", a);
        }
        let req = req.body(Full::new(body))?;
        let exchange = async {
            let resp = self.client.request(req).await?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s.min(300)));
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok(Reply {
                status,
                retry_after,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| anyhow!("no response within {} s", self.timeout.as_secs_f64()))?
    }
}

/// Statuses worth another try: the server's trouble, not the body's (RFC 9110, 15.5.9 and
/// 15.6; RFC 6585, 4, for 429).
fn retryable(s: StatusCode) -> bool {
    s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT || s == StatusCode::TOO_MANY_REQUESTS
}

/// The start of a response body, on one line, for an error message.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        "empty body".into()
    } else {
        format!("\"{line}\"")
    }
}

impl Target for Webhook {
    fn position(&self) -> Lsn {
        self.delivered
    }

    fn begin(&mut self, commit: Lsn) -> Result<()> {
        (self.commit, self.parts) = (commit, 0);
        self.body.clear();
        Ok(())
    }

    fn line(&mut self, raw: &[u8]) -> Result<()> {
        if !self.body.is_empty() && self.body.len() + raw.len() + 1 > self.max_body {
            self.post(false)?;
        }
        self.body.extend_from_slice(raw);
        self.body.push(b'\n');
        Ok(())
    }

    fn commit(&mut self, end: Lsn) -> Result<()> {
        // A part is sent only when the next line does not fit, so the last part is never
        // empty; a transaction with no lines at all (debezium's for a message) has no POST.
        if !self.body.is_empty() {
            self.post(true)?;
        }
        self.delivered = end;
        self.state.offer(self.delivered)
    }

    fn lone(&mut self, at: Lsn, raw: &[u8]) -> Result<()> {
        self.begin(at)?;
        self.line(raw)?;
        self.post(true)
    }

    fn finish(mut self: Box<Self>) -> Result<Lsn> {
        self.state.finish(self.delivered)?;
        Ok(self.delivered)
    }
}
