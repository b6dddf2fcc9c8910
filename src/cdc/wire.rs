//! The streaming replication protocol's messages inside COPY BOTH (PostgreSQL docs,
//! "Streaming Replication Protocol", START_REPLICATION): what the server sends (XLogData with
//! a pgoutput message inside, and keepalives) and the standby status update that tells it how
//! far the client has written, flushed and applied; the flush position is what the slot may
//! advance to.

use crate::pg::lsn::Lsn;
use anyhow::{Result, bail};

/// A message from the server.
#[derive(Debug, PartialEq)]
pub enum FromServer<'a> {
    /// WAL data: for a logical slot, one output plugin message.
    XLogData {
        start: u64,
        end: u64,
        sent: i64,
        data: &'a [u8],
    },
    /// The server's WAL end; `reply` asks for a status update at once.
    Keepalive { end: u64, sent: i64, reply: bool },
}

pub fn parse(b: &[u8]) -> Result<FromServer<'_>> {
    let u64_at = |i: usize| -> Result<u64> {
        match b.get(i..i + 8) {
            Some(s) => Ok(u64::from_be_bytes(s.try_into()?)),
            None => bail!("a replication message cut short ({} bytes)", b.len()),
        }
    };
    match b.first() {
        Some(b'w') => Ok(FromServer::XLogData {
            start: u64_at(1)?,
            end: u64_at(9)?,
            sent: u64_at(17)? as i64,
            data: &b[25..],
        }),
        Some(b'k') if b.len() == 18 => Ok(FromServer::Keepalive {
            end: u64_at(1)?,
            sent: u64_at(9)? as i64,
            reply: b[17] != 0,
        }),
        Some(b'k') => bail!("a keepalive of {} bytes (18 expected)", b.len()),
        Some(t) => bail!("unknown replication message {:?}", *t as char),
        None => bail!("an empty replication message"),
    }
}

/// Microseconds from the Unix epoch to PostgreSQL's, 2000-01-01 UTC.
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// Now, in PostgreSQL's microseconds.
pub fn pg_now() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    d.as_micros() as i64 - PG_EPOCH_US
}

/// The positions a standby status update reports: received up to `written`, durable up to
/// `flushed` (the slot's confirmed position may move there), applied up to `applied`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Positions {
    pub written: Lsn,
    pub flushed: Lsn,
    pub applied: Lsn,
}

/// A standby status update ('r'); `reply` asks the server to answer with a keepalive.
pub fn status_update(p: Positions, reply: bool) -> Vec<u8> {
    let mut m = Vec::with_capacity(34);
    m.push(b'r');
    for v in [p.written, p.flushed, p.applied] {
        m.extend(v.0.to_be_bytes());
    }
    m.extend(pg_now().to_be_bytes());
    m.push(u8::from(reply));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xlogdata_keepalive_and_status() {
        let mut w = vec![b'w'];
        w.extend(5u64.to_be_bytes());
        w.extend(9u64.to_be_bytes());
        w.extend(7i64.to_be_bytes());
        w.extend(b"B...");
        assert_eq!(
            parse(&w).unwrap(),
            FromServer::XLogData {
                start: 5,
                end: 9,
                sent: 7,
                data: b"B..."
            }
        );
        let mut k = vec![b'k'];
        k.extend(42u64.to_be_bytes());
        k.extend(1i64.to_be_bytes());
        k.push(1);
        assert_eq!(
            parse(&k).unwrap(),
            FromServer::Keepalive {
                end: 42,
                sent: 1,
                reply: true
            }
        );
        assert!(parse(&k[..10]).is_err());
        assert!(parse(&w[..20]).is_err());
        let p = Positions {
            written: Lsn(1),
            flushed: Lsn(2),
            applied: Lsn(3),
        };
        let r = status_update(p, false);
        assert_eq!((r.len(), r[0], r[33]), (34, b'r', 0));
        assert_eq!(&r[9..17], &2u64.to_be_bytes());
    }
}
