//! `nats://HOST[:PORT]/SUBJECT?stream=NAME`: each line (or Debezium event) one message on
//! SUBJECT in the JetStream stream NAME, created (file storage, that one subject) when missing.
//!
//! Exactly once, whatever is killed when: every message carries `Nats-Msg-Id:
//! SUBJECT:COMMITLSN:N` (the N-th message of the transaction committing at COMMITLSN; commit
//! LSNs only grow along a slot), and `Nats-Expected-Stream: NAME`. On start weir-sink reads
//! the last message the stream holds on SUBJECT and skips everything up to it, so a replay
//! from the slot continues right after it however long the sink was down (the server's
//! duplicate window, two minutes by default, drops repeats too, but only that long). So
//! SUBJECT belongs to one sink. A transaction counts as delivered once the server acknowledged
//! every message of it; with `--state DIR` its end is recorded there for weir-cdc
//! `--confirm-from file:///DIR`. Publishes are pipelined (up to [`WINDOW`] awaiting their
//! acknowledgement); any refusal or a silence longer than `--timeout` stops weir-sink, and
//! the next start resumes after what the stream holds.
//!
//! The client speaks the NATS protocol itself (docs.nats.io, "Client Protocol"; JetStream's
//! API subjects from "JetStream wire API reference"): plain TCP, with a token
//! (`WEIR_NATS_TOKEN`) or user and password (`WEIR_NATS_USER`, `WEIR_NATS_PASSWORD`), no TLS.

use super::state::Recorder;
use super::{SinkOptions, Target};
use crate::pg::lsn::Lsn;
use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::{BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Publishes awaiting their acknowledgement at most.
pub const WINDOW: usize = 512;

/// A reply: the id of the request it answers, the status of a header-only reply (503 for "no
/// responders"), and the payload.
pub struct Reply {
    pub id: u64,
    pub status: Option<u16>,
    pub payload: Vec<u8>,
}

/// One connection to a NATS server, with an inbox for replies to its requests.
pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
    inbox: String,
    next: u64,
    timeout: Duration,
}

impl Conn {
    /// Connects to HOST:PORT, authenticating from the environment, and subscribes its inbox.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Conn> {
        let tcp =
            TcpStream::connect(addr).with_context(|| format!("connecting to NATS at {addr}"))?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_nodelay(true)?;
        let mut c = Conn {
            reader: BufReader::new(tcp.try_clone()?),
            writer: BufWriter::with_capacity(1 << 16, tcp),
            inbox: format!("_INBOX.weir.{}", inbox_token()),
            next: 0,
            timeout,
        };
        let mut line = String::new();
        c.reader
            .read_line(&mut line)
            .context("reading the NATS server's INFO")?;
        let info: Value = line
            .strip_prefix("INFO ")
            .and_then(|j| serde_json::from_str(j).ok())
            .ok_or_else(|| anyhow!("{addr}: not a NATS server (it said {:?})", line.trim()))?;
        if info["tls_required"] == true {
            bail!("{addr}: the NATS server requires TLS, which weir-sink does not speak yet");
        }
        let mut connect = json!({"verbose": false, "pedantic": false, "headers": true,
            "no_responders": true, "name": "weir-sink", "lang": "rust",
            "version": env!("CARGO_PKG_VERSION")});
        if let Ok(t) = std::env::var("WEIR_NATS_TOKEN") {
            connect["auth_token"] = t.into();
        }
        if let Ok(u) = std::env::var("WEIR_NATS_USER") {
            connect["user"] = u.into();
            connect["pass"] = std::env::var("WEIR_NATS_PASSWORD")
                .unwrap_or_default()
                .into();
        }
        write!(
            c.writer,
            "CONNECT {connect}\r\nPING\r\nSUB {}.* 1\r\n",
            c.inbox
        )?;
        c.writer.flush()?;
        // The PONG says the CONNECT was taken (a refused one gets -ERR first).
        loop {
            line.clear();
            c.read_line(&mut line)?;
            match line.trim_end() {
                "PONG" => return Ok(c),
                "+OK" => {}
                "PING" => c.writer.write_all(b"PONG\r\n")?,
                l if l.starts_with("INFO ") => {}
                l => bail!("{addr}: NATS refused the connection: {l}"),
            }
        }
    }

    fn read_line(&mut self, line: &mut String) -> Result<()> {
        match self.reader.read_line(line) {
            Ok(0) => bail!("the NATS server closed the connection"),
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                bail!(
                    "no reply from the NATS server within {} s",
                    self.timeout.as_secs_f64()
                )
            }
            Err(e) => Err(e).context("reading from the NATS server"),
        }
    }

    /// Sends `payload` to `subject` with `headers`, asking for a reply; returns the reply's id.
    /// Buffered: [`Conn::reply`] flushes before it waits.
    pub fn publish(
        &mut self,
        subject: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> Result<u64> {
        self.next += 1;
        let id = self.next;
        let w = &mut self.writer;
        if headers.is_empty() {
            write!(w, "PUB {subject} {}.{id} {}\r\n", self.inbox, payload.len())?;
        } else {
            // NATS/1.0 CRLF, then "K: V" CRLF each, then CRLF (the header block's length).
            let hlen = 10
                + headers
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 4)
                    .sum::<usize>()
                + 2;
            let total = hlen + payload.len();
            write!(
                w,
                "HPUB {subject} {}.{id} {hlen} {total}\r\nNATS/1.0\r\n",
                self.inbox
            )?;
            for (k, v) in headers {
                w.write_all(k.as_bytes())?;
                w.write_all(b": ")?;
                w.write_all(v.as_bytes())?;
                w.write_all(b"\r\n")?;
            }
            w.write_all(b"\r\n")?;
        }
        w.write_all(payload)?;
        w.write_all(b"\r\n")?;
        Ok(id)
    }

    /// The next reply to one of this connection's requests.
    pub fn reply(&mut self) -> Result<Reply> {
        self.writer.flush().context("writing to the NATS server")?;
        let mut line = String::new();
        loop {
            line.clear();
            self.read_line(&mut line)?;
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["PING"] => {
                    self.writer.write_all(b"PONG\r\n")?;
                    self.writer.flush()?;
                }
                ["MSG", subject, _sid, .., len] => {
                    let (subject, len) = (subject.to_string(), len.parse()?);
                    let payload = self.payload(len)?;
                    return self.reply_for(&subject, None, payload);
                }
                ["HMSG", subject, _sid, .., hlen, total] => {
                    let (subject, hlen, total): (String, usize, usize) =
                        (subject.to_string(), hlen.parse()?, total.parse()?);
                    let mut all = self.payload(total)?;
                    let payload = all.split_off(hlen.min(total));
                    // "NATS/1.0 503" on the first header line: a status without a body.
                    let status = String::from_utf8_lossy(&all)
                        .lines()
                        .next()
                        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
                    return self.reply_for(&subject, status, payload);
                }
                ["-ERR", ..] => bail!("the NATS server says {}", line.trim_end()),
                _ => {} // +OK, PONG, INFO updates
            }
        }
    }

    fn payload(&mut self, len: usize) -> Result<Vec<u8>> {
        let mut p = vec![0; len + 2];
        self.reader
            .read_exact(&mut p)
            .context("reading from the NATS server")?;
        p.truncate(len);
        Ok(p)
    }

    fn reply_for(&self, subject: &str, status: Option<u16>, payload: Vec<u8>) -> Result<Reply> {
        let id = subject
            .strip_prefix(&self.inbox)
            .and_then(|s| s.strip_prefix('.')?.parse().ok())
            .ok_or_else(|| anyhow!("a NATS message on {subject}, not a reply"))?;
        Ok(Reply {
            id,
            status,
            payload,
        })
    }

    /// A JetStream API call: `$JS.API.{api}` with a JSON body, its JSON reply. Only while no
    /// publish awaits its acknowledgement.
    pub fn api(&mut self, api: &str, body: &Value) -> Result<Value> {
        let id = self.publish(&format!("$JS.API.{api}"), &[], body.to_string().as_bytes())?;
        let r = self.reply()?;
        if r.id != id {
            bail!("a NATS reply to another request");
        }
        if r.status == Some(503) {
            bail!("the NATS server has no JetStream (start it with -js)");
        }
        serde_json::from_slice(&r.payload).context("a JetStream reply that is not JSON")
    }
}

/// A random name for this connection's inbox.
fn inbox_token() -> String {
    let mut b = [0u8; 8];
    crate::plumbing::random_bytes(&mut b);
    hex::encode(b)
}

/// What a `nats://` URL names.
struct Url {
    addr: String,
    subject: String,
    stream: String,
}

fn parse_url(url: &str) -> Result<Url> {
    let bad = || anyhow!("{url}: expected nats://HOST[:PORT]/SUBJECT?stream=NAME");
    let rest = url.strip_prefix("nats://").ok_or_else(bad)?;
    let (host, rest) = rest.split_once('/').ok_or_else(bad)?;
    let (subject, query) = rest.split_once('?').ok_or_else(bad)?;
    let stream = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("stream="))
        .filter(|s| !s.is_empty())
        .ok_or_else(bad)?;
    if subject.is_empty() || host.is_empty() {
        return Err(bad());
    }
    let addr = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:4222")
    };
    Ok(Url {
        addr,
        subject: subject.into(),
        stream: stream.into(),
    })
}

/// A JetStream API reply's error, if it is one: (code, description).
fn api_error(v: &Value) -> Option<(i64, String)> {
    let e = v.get("error")?;
    Some((
        e["code"].as_i64().unwrap_or(0),
        e["description"].as_str().unwrap_or("").to_string(),
    ))
}

pub struct Nats {
    conn: Conn,
    url: Url,
    /// The id of the last message the stream held from this subject at start: lines up to it
    /// are there already.
    resume: Option<(Lsn, u64)>,
    /// The transaction being published and the number of its last message.
    commit: Lsn,
    index: u64,
    /// Publishes awaiting acknowledgement, oldest first, each with the end of the transaction
    /// it completes; acknowledgements that came before an older one's.
    waiting: VecDeque<(u64, Option<Lsn>)>,
    early: BTreeSet<u64>,
    /// The message id being built (reused).
    id: String,
    delivered: Lsn,
    state: Recorder,
}

impl Nats {
    pub fn open(o: &SinkOptions) -> Result<Nats> {
        let url = parse_url(&o.url)?;
        let mut conn = Conn::connect(&url.addr, o.timeout)?;
        ensure_stream(&mut conn, &url)?;
        let resume = last_id(&mut conn, &url)?;
        let state = Recorder::open(o.state.as_deref(), o.sync_interval)?;
        Ok(Nats {
            conn,
            url,
            resume,
            commit: Lsn::ZERO,
            index: 0,
            waiting: VecDeque::new(),
            early: BTreeSet::new(),
            id: String::new(),
            delivered: state.recorded(),
            state,
        })
    }

    fn publish(&mut self, raw: &[u8]) -> Result<()> {
        self.index += 1;
        if let Some((c, n)) = self.resume {
            if self.commit < c || (self.commit == c && self.index <= n) {
                return Ok(());
            }
        }
        self.id.clear();
        let _ = write!(
            self.id,
            "{}:{}:{}",
            self.url.subject, self.commit, self.index
        );
        let headers = [
            ("Nats-Msg-Id", self.id.as_str()),
            ("Nats-Expected-Stream", &self.url.stream),
        ];
        let rid = self.conn.publish(&self.url.subject, &headers, raw)?;
        self.waiting.push_back((rid, None));
        if self.waiting.len() >= WINDOW {
            // Down to half: the publishes after go out in one write, not one each.
            while self.waiting.len() > WINDOW / 2 {
                self.acknowledged()?;
            }
        }
        Ok(())
    }

    /// Waits for one acknowledgement, and moves the delivered position past every
    /// transaction now wholly acknowledged.
    fn acknowledged(&mut self) -> Result<()> {
        let r = self.conn.reply()?;
        if r.status == Some(503) {
            bail!(
                "no JetStream stream takes subject {} (NATS answered 503, no responders)",
                self.url.subject
            );
        }
        let ack: Value = serde_json::from_slice(&r.payload)
            .context("a publish acknowledgement that is not JSON")?;
        if let Some((code, what)) = api_error(&ack) {
            bail!(
                "NATS JetStream refused a message on {}: {what} ({code})",
                self.url.subject
            );
        }
        self.early.insert(r.id);
        while let Some(&(id, end)) = self.waiting.front() {
            if !self.early.remove(&id) {
                break;
            }
            self.waiting.pop_front();
            if let Some(end) = end {
                self.delivered = end;
            }
        }
        Ok(())
    }
}

/// Creates the stream, for the subject, when the server has none of that name.
fn ensure_stream(conn: &mut Conn, url: &Url) -> Result<()> {
    let info = conn.api(&format!("STREAM.INFO.{}", url.stream), &json!({}))?;
    match api_error(&info) {
        None => return Ok(()),
        Some((404, _)) => {}
        Some((code, what)) => bail!("NATS stream {}: {what} ({code})", url.stream),
    }
    let config = json!({"name": url.stream, "subjects": [url.subject], "storage": "file"});
    let made = conn.api(&format!("STREAM.CREATE.{}", url.stream), &config)?;
    if let Some((code, what)) = api_error(&made) {
        bail!("creating NATS stream {}: {what} ({code})", url.stream);
    }
    Ok(())
}

/// The (commit LSN, number) in the id of the last message the stream holds on the subject.
fn last_id(conn: &mut Conn, url: &Url) -> Result<Option<(Lsn, u64)>> {
    let got = conn.api(
        &format!("STREAM.MSG.GET.{}", url.stream),
        &json!({"last_by_subj": url.subject}),
    )?;
    match api_error(&got) {
        None => {}
        Some((404, _)) => return Ok(None),
        Some((code, what)) => bail!("reading NATS stream {}: {what} ({code})", url.stream),
    }
    let headers = got["message"]["hdrs"]
        .as_str()
        .and_then(|h| base64::engine::general_purpose::STANDARD.decode(h).ok())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&headers);
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("Nats-Msg-Id:"))
        .map(str::trim)
        .ok_or_else(|| {
            anyhow!(
                "the last message on {} in stream {} has no Nats-Msg-Id: the subject is not weir-sink's alone",
                url.subject,
                url.stream
            )
        })?;
    let bad = || {
        anyhow!(
            "the last message on {} has id {id}, not one of weir-sink's",
            url.subject
        )
    };
    let rest = id
        .strip_prefix(&url.subject)
        .and_then(|r| r.strip_prefix(':'))
        .ok_or_else(bad)?;
    let (lsn, n) = rest.rsplit_once(':').ok_or_else(bad)?;
    Ok(Some((
        Lsn::parse(lsn).map_err(|_| bad())?,
        n.parse().map_err(|_| bad())?,
    )))
}

impl Target for Nats {
    fn position(&self) -> Lsn {
        self.delivered
    }

    fn begin(&mut self, commit: Lsn) -> Result<()> {
        (self.commit, self.index) = (commit, 0);
        Ok(())
    }

    fn line(&mut self, raw: &[u8]) -> Result<()> {
        self.publish(raw)
    }

    fn commit(&mut self, end: Lsn) -> Result<()> {
        match self.waiting.back_mut() {
            // Delivered once the last publish so far is acknowledged.
            Some(last) => last.1 = Some(end),
            None => self.delivered = end,
        }
        self.state.offer(self.delivered)
    }

    fn lone(&mut self, at: Lsn, raw: &[u8]) -> Result<()> {
        self.begin(at)?;
        self.publish(raw)
    }

    fn finish(mut self: Box<Self>) -> Result<Lsn> {
        while !self.waiting.is_empty() {
            self.acknowledged()?;
        }
        self.state.finish(self.delivered)?;
        Ok(self.delivered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_host_subject_and_stream() {
        let u = parse_url("nats://127.0.0.1:4333/cdc.app?stream=APP").unwrap();
        assert_eq!(
            (u.addr.as_str(), u.subject.as_str(), u.stream.as_str()),
            ("127.0.0.1:4333", "cdc.app", "APP")
        );
        assert_eq!(
            parse_url("nats://nats/cdc?stream=S").unwrap().addr,
            "nats:4222"
        );
        for bad in [
            "nats://host/cdc",
            "nats://host/?stream=S",
            "nats://host/cdc?stream=",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
