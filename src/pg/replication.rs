//! A connection through libpq, for what the `postgres` crate cannot speak: the replication
//! protocol's commands (`IDENTIFY_SYSTEM`, `BASE_BACKUP`) and their COPY streams; and for
//! what it does slower: reading a COPY OUT stream row by row (weir-extract's workers).
//! libpq is what `pg_basebackup` and `pg_recvlogical` use, so authentication, TLS and the
//! password file behave exactly as they do there.
//!
//! Reference: PostgreSQL documentation, 55.4 "Streaming Replication Protocol" and 34.3-34.10
//! (libpq's command execution and COPY functions).

use super::conn::ConnParams;
use crate::plumbing::one_line;
use anyhow::{Result, anyhow, bail};
use pq_sys as pq;
use std::ffi::{CStr, CString, c_char, c_int, c_void};

/// One open replication connection. Not shared between threads: libpq connections are not
/// thread-safe, but may move to another thread.
pub struct ReplConn {
    conn: *mut pq::PGconn,
}

// SAFETY: a PGconn is used from one thread at a time (every method takes &mut self or &self
// without libpq keeping thread-local state), which is what libpq requires.
unsafe impl Send for ReplConn {}

/// What [`ReplConn::copy_data_within`] found.
pub enum Polled {
    Data(CopyData),
    /// The COPY stream ended.
    End,
    Timeout,
}

/// A result set in text form: rows of nullable values.
pub type Rows = Vec<Vec<Option<String>>>;

/// What [`ReplConn::next_result`] found.
pub enum Reply {
    /// A result set (or an empty one for a command).
    Rows(Rows),
    /// The server began a COPY OUT stream: read it with [`ReplConn::copy_data`].
    CopyOut,
    /// The server began a COPY BOTH stream (START_REPLICATION): read it with
    /// [`ReplConn::copy_data`], answer with [`ReplConn::put_copy_data`].
    CopyBoth,
}

impl ReplConn {
    /// Opens a physical replication connection (`replication=true`).
    pub fn connect(params: &ConnParams) -> Result<ReplConn> {
        Self::open(params, "true")
    }

    /// Opens a logical replication connection to the database (`replication=database`),
    /// which takes SQL too.
    pub fn connect_logical(params: &ConnParams) -> Result<ReplConn> {
        Self::open(params, "database")
    }

    /// Opens an ordinary connection (`replication=false`): SQL and COPY only.
    pub fn connect_plain(params: &ConnParams) -> Result<ReplConn> {
        Self::open(params, "false")
    }

    fn open(params: &ConnParams, replication: &str) -> Result<ReplConn> {
        let mut pairs: Vec<(CString, CString)> = Vec::new();
        for (k, v) in params.iter() {
            if k == "dbname" && replication == "true" {
                continue; // a physical replication connection names no database
            }
            pairs.push((CString::new(k)?, CString::new(v)?));
        }
        pairs.push((CString::new("replication")?, CString::new(replication)?));
        let mut keys: Vec<*const c_char> = pairs.iter().map(|(k, _)| k.as_ptr()).collect();
        let mut values: Vec<*const c_char> = pairs.iter().map(|(_, v)| v.as_ptr()).collect();
        keys.push(std::ptr::null());
        values.push(std::ptr::null());
        // SAFETY: both arrays are NULL-terminated and outlive the call.
        let conn = unsafe { pq::PQconnectdbParams(keys.as_ptr(), values.as_ptr(), 0) };
        if conn.is_null() {
            bail!("cannot connect to {}: out of memory", params.describe());
        }
        let c = ReplConn { conn };
        // SAFETY: conn is a valid PGconn until Drop.
        if unsafe { pq::PQstatus(c.conn) } != pq::ConnStatusType::CONNECTION_OK {
            bail!("cannot connect to {}: {}", params.describe(), c.error());
        }
        Ok(c)
    }

    /// Drops the server's notices ("all required WAL segments have been archived") instead of
    /// printing them to stderr, libpq's default, which pg_basebackup keeps: for --quiet.
    pub fn drop_notices(&mut self) {
        unsafe extern "C" fn ignore(_: *mut c_void, _: *const c_char) {}
        // SAFETY: valid connection; the processor keeps no state and never reads its arguments.
        unsafe { pq::PQsetNoticeProcessor(self.conn, Some(ignore), std::ptr::null_mut()) };
    }

    /// The server's version as a number (150004 for 15.4).
    pub fn server_version(&self) -> u32 {
        // SAFETY: valid connection.
        unsafe { pq::PQserverVersion(self.conn) as u32 }
    }

    /// Runs one command and returns its result set.
    pub fn query(&mut self, sql: &str) -> Result<Rows> {
        self.send(sql)?;
        let mut last = None;
        while let Some(r) = self.next_result()? {
            match r {
                Reply::Rows(rows) => last = Some(rows),
                Reply::CopyOut | Reply::CopyBoth => bail!("{sql}: the server began a COPY stream"),
            }
        }
        last.ok_or_else(|| anyhow!("{sql}: the server sent no result"))
    }

    /// Sends a command without waiting; read its results with [`ReplConn::next_result`].
    pub fn send(&mut self, sql: &str) -> Result<()> {
        let q = CString::new(sql)?;
        // SAFETY: valid connection and NUL-terminated query.
        if unsafe { pq::PQsendQuery(self.conn, q.as_ptr()) } != 1 {
            bail!("{}", self.error());
        }
        Ok(())
    }

    /// The next result of the command in flight, or None when it is done. A server error
    /// becomes an error carrying its message (and SQLSTATE).
    pub fn next_result(&mut self) -> Result<Option<Reply>> {
        // SAFETY: valid connection; the result is cleared by Res's Drop.
        let res = Res(unsafe { pq::PQgetResult(self.conn) });
        if res.0.is_null() {
            return Ok(None);
        }
        // SAFETY: res is a valid PGresult.
        match unsafe { pq::PQresultStatus(res.0) } {
            pq::ExecStatusType::PGRES_TUPLES_OK | pq::ExecStatusType::PGRES_COMMAND_OK => {
                Ok(Some(Reply::Rows(res.rows())))
            }
            pq::ExecStatusType::PGRES_COPY_OUT => Ok(Some(Reply::CopyOut)),
            pq::ExecStatusType::PGRES_COPY_BOTH => Ok(Some(Reply::CopyBoth)),
            _ => Err(anyhow!("{}", res.error())),
        }
    }

    /// The next CopyData message of a COPY OUT stream, waiting for it; None at its end (then
    /// the command's remaining results follow through [`ReplConn::next_result`]).
    pub fn copy_data(&mut self) -> Result<Option<CopyData>> {
        let mut buf: *mut c_char = std::ptr::null_mut();
        // SAFETY: valid connection; libpq allocates buf, freed by CopyData's Drop.
        let n = unsafe { pq::PQgetCopyData(self.conn, &mut buf, 0) };
        match n {
            -1 => Ok(None),
            -2 => Err(anyhow!("{}", self.error())),
            n if n > 0 => Ok(Some(CopyData {
                buf,
                len: n as usize,
            })),
            n => Err(anyhow!("unexpected PQgetCopyData result {n}")),
        }
    }

    /// Like [`ReplConn::copy_data`], but waits at most `timeout`: a streaming client must
    /// keep sending status updates while nothing arrives or while it cannot take more.
    pub fn copy_data_within(&mut self, timeout: std::time::Duration) -> Result<Polled> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let mut buf: *mut c_char = std::ptr::null_mut();
            // SAFETY: valid connection; async mode (1) returns 0 when no whole message is
            // buffered; libpq allocates buf, freed by CopyData's Drop.
            match unsafe { pq::PQgetCopyData(self.conn, &mut buf, 1) } {
                -1 => return Ok(Polled::End),
                -2 => bail!("{}", self.error()),
                0 => {}
                n if n > 0 => {
                    return Ok(Polled::Data(CopyData {
                        buf,
                        len: n as usize,
                    }));
                }
                n => bail!("unexpected PQgetCopyData result {n}"),
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(Polled::Timeout);
            }
            self.wait_readable(left)?;
            // SAFETY: valid connection; reads what the socket has into libpq's buffer.
            if unsafe { pq::PQconsumeInput(self.conn) } != 1 {
                bail!("{}", self.error());
            }
        }
    }

    /// Waits until the connection's socket has something to read, or `timeout` passes.
    fn wait_readable(&self, timeout: std::time::Duration) -> Result<()> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        // SAFETY: valid connection; the socket stays open while the connection does.
        let fd = unsafe { pq::PQsocket(self.conn) };
        if fd < 0 {
            bail!("the replication connection has no socket");
        }
        // SAFETY: fd is libpq's open socket, borrowed for this call only.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let t = Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        match poll(&mut fds, Some(&t)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
            Err(e) => bail!("waiting for the server: {e}"),
        }
    }

    /// Sends one CopyData message on a COPY BOTH stream and waits until libpq has handed it
    /// to the kernel (a standby status update must not sit in a buffer).
    pub fn put_copy_data(&mut self, data: &[u8]) -> Result<()> {
        let len = c_int::try_from(data.len())?;
        // SAFETY: valid connection; data is len readable bytes, copied by libpq.
        if unsafe { pq::PQputCopyData(self.conn, data.as_ptr().cast(), len) } != 1 {
            bail!("{}", self.error());
        }
        // SAFETY: valid connection; 1 means more to send, so call again (blocking mode).
        loop {
            match unsafe { pq::PQflush(self.conn) } {
                0 => return Ok(()),
                1 => continue,
                _ => bail!("{}", self.error()),
            }
        }
    }

    fn error(&self) -> String {
        // SAFETY: valid connection; the message lives as long as it.
        let m = unsafe { CStr::from_ptr(pq::PQerrorMessage(self.conn)) };
        one_line(&m.to_string_lossy())
    }
}

impl Drop for ReplConn {
    fn drop(&mut self) {
        // SAFETY: conn came from PQconnectdbParams and is finished once.
        unsafe { pq::PQfinish(self.conn) }
    }
}

/// One CopyData message's payload, owned by libpq until dropped.
pub struct CopyData {
    buf: *mut c_char,
    len: usize,
}

impl std::ops::Deref for CopyData {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: libpq returned len bytes at buf.
        unsafe { std::slice::from_raw_parts(self.buf as *const u8, self.len) }
    }
}

impl Drop for CopyData {
    fn drop(&mut self) {
        // SAFETY: buf was allocated by PQgetCopyData.
        unsafe { pq::PQfreemem(self.buf.cast()) }
    }
}

struct Res(*mut pq::PGresult);

impl Res {
    fn rows(&self) -> Rows {
        // SAFETY: self.0 is a valid PGresult; values are NUL-terminated text.
        unsafe {
            let (n, f) = (pq::PQntuples(self.0), pq::PQnfields(self.0));
            (0..n)
                .map(|r| (0..f).map(|c| self.value(r, c)).collect())
                .collect()
        }
    }

    unsafe fn value(&self, r: c_int, c: c_int) -> Option<String> {
        // SAFETY: the caller keeps r and c in range.
        unsafe {
            if pq::PQgetisnull(self.0, r, c) == 1 {
                return None;
            }
            let v = CStr::from_ptr(pq::PQgetvalue(self.0, r, c));
            Some(v.to_string_lossy().into_owned())
        }
    }

    fn error(&self) -> String {
        // SAFETY: valid result; the message lives as long as it.
        let m = unsafe { CStr::from_ptr(pq::PQresultErrorMessage(self.0)) };
        one_line(&m.to_string_lossy())
    }
}

impl Drop for Res {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the result came from PQgetResult and is cleared once.
            unsafe { pq::PQclear(self.0) }
        }
    }
}

/// Parses an LSN in PostgreSQL's text form, `X/X` (hex halves).
pub fn parse_lsn(s: &str) -> Result<u64> {
    Ok(super::lsn::Lsn::parse(s)?.0)
}

/// An LSN in PostgreSQL's text form.
pub fn format_lsn(lsn: u64) -> String {
    super::lsn::Lsn(lsn).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_round_trip_in_postgresql_text_form() {
        assert_eq!(parse_lsn("0/2000028").unwrap(), 0x2000028);
        assert_eq!(parse_lsn("1A/FF").unwrap(), 0x1A_0000_00FF);
        assert_eq!(format_lsn(0x1A_0000_00FF), "1A/FF");
        assert!(parse_lsn("2000028").is_err());
        assert!(parse_lsn("1/XYZ").is_err());
        assert!(parse_lsn("100000000/0").is_err());
    }
}
