//! A streamed transaction in progress (pgoutput protocol 2): its messages kept, as the server
//! sent them, in an unnamed temporary file of its own until its Stream Commit writes them out
//! in commit order, or its Stream Abort throws them away. Memory stays bounded whatever the
//! transaction's size, and the server no longer spills it to `pg_replslot`.
//!
//! A subtransaction's abort throws away what it and the subtransactions after it sent: the
//! file is cut back to where its first message starts (PostgreSQL's own apply worker does the
//! same, worker.c, subxact_info_add and stream_abort_internal).

use anyhow::{Context, Result, bail};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};

pub struct Spill {
    file: BufWriter<File>,
    len: u64,
    /// Each (sub)transaction's xid and where its first message starts, in order.
    subxacts: Vec<(u32, u64)>,
}

impl Spill {
    pub fn new() -> Result<Spill> {
        let f = tempfile::tempfile().context("creating a file for a streamed transaction")?;
        Ok(Spill {
            file: BufWriter::with_capacity(1 << 20, f),
            len: 0,
            subxacts: Vec::new(),
        })
    }

    /// Keeps message `msg` at WAL position `lsn`, sent by (sub)transaction `xid`.
    pub fn push(&mut self, xid: u32, lsn: u64, msg: &[u8]) -> Result<()> {
        if !self.subxacts.iter().any(|(x, _)| *x == xid) {
            self.subxacts.push((xid, self.len));
        }
        self.file.write_all(&lsn.to_be_bytes())?;
        self.file.write_all(&(msg.len() as u32).to_be_bytes())?;
        self.file.write_all(msg)?;
        self.len += 12 + msg.len() as u64;
        Ok(())
    }

    /// Subtransaction `subxid` aborted: what it and those after it sent goes.
    pub fn abort(&mut self, subxid: u32) -> Result<()> {
        let Some(i) = self.subxacts.iter().position(|(x, _)| *x == subxid) else {
            return Ok(()); // it sent nothing
        };
        let at = self.subxacts[i].1;
        self.subxacts.truncate(i);
        self.file.flush()?;
        let f = self.file.get_mut();
        f.set_len(at)?;
        f.seek(std::io::SeekFrom::Start(at))?;
        self.len = at;
        Ok(())
    }

    /// Every message kept, in order, with its position.
    pub fn replay(mut self, mut each: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        self.file.flush()?;
        let mut f = self.file.into_inner().map_err(|e| e.into_error())?;
        f.rewind()?;
        let mut r = BufReader::with_capacity(1 << 20, f);
        let mut head = [0u8; 12];
        let mut msg = Vec::new();
        let mut read = 0u64;
        while read < self.len {
            r.read_exact(&mut head)?;
            let lsn = u64::from_be_bytes(head[..8].try_into().expect("8 bytes"));
            let n = u32::from_be_bytes(head[8..].try_into().expect("4 bytes")) as usize;
            msg.resize(n, 0);
            r.read_exact(&mut msg)?;
            each(lsn, &msg)?;
            read += 12 + n as u64;
        }
        if read != self.len {
            bail!("a streamed transaction's file is damaged");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subtransaction_abort_cuts_back_to_its_first_message() {
        let mut s = Spill::new().unwrap();
        s.push(10, 1, b"a").unwrap();
        s.push(11, 2, b"bb").unwrap();
        s.push(12, 3, b"c").unwrap();
        s.abort(11).unwrap();
        s.push(13, 4, b"dd").unwrap();
        s.abort(99).unwrap();
        let mut got = Vec::new();
        s.replay(|lsn, m| {
            got.push((lsn, m.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(got, vec![(1, b"a".to_vec()), (4, b"dd".to_vec())]);
    }
}
