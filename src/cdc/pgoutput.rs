//! The messages of `pgoutput`, PostgreSQL's built-in logical decoding plugin, protocol versions
//! 1 and 2 (PostgreSQL docs, "Logical Replication Message Formats"; src/backend/replication/
//! logical/proto.c). Version 2 adds streamed transactions: a big transaction in progress comes
//! in blocks between Stream Start and Stream Stop, whose changes carry their (sub)transaction's
//! xid after the tag ([`decode_streamed`]), and ends with Stream Commit or Stream Abort. Decoding borrows from the message: a row's values are slices of the bytes the
//! server sent, so a change is parsed without copying its data.
//!
//! Integers are big-endian; a String is NUL-terminated; LSNs are 64-bit, times microseconds
//! since 2000-01-01 UTC.

use anyhow::{Result, bail};

/// One decoded message.
#[derive(Debug, PartialEq)]
pub enum Message<'a> {
    Begin {
        final_lsn: u64,
        commit_time: i64,
        xid: u32,
    },
    Commit {
        commit_lsn: u64,
        end_lsn: u64,
        commit_time: i64,
    },
    Origin {
        lsn: u64,
        name: &'a str,
    },
    Relation(Relation<'a>),
    Type {
        oid: u32,
        namespace: &'a str,
        name: &'a str,
    },
    Insert {
        relation: u32,
        new: Tuple<'a>,
    },
    /// `old` is the replica identity's columns (`K`) or the whole old row (`O`, with
    /// REPLICA IDENTITY FULL), when the server sent them.
    Update {
        relation: u32,
        old: Option<(OldKind, Tuple<'a>)>,
        new: Tuple<'a>,
    },
    Delete {
        relation: u32,
        old: (OldKind, Tuple<'a>),
    },
    Truncate {
        relations: Vec<u32>,
        cascade: bool,
        restart_identity: bool,
    },
    /// A block of a streamed transaction starts (protocol 2).
    StreamStart {
        xid: u32,
        first: bool,
    },
    StreamStop,
    StreamCommit {
        xid: u32,
        commit_lsn: u64,
        end_lsn: u64,
        commit_time: i64,
    },
    /// The transaction (`subxid == xid`) or one of its subtransactions aborted.
    StreamAbort {
        xid: u32,
        subxid: u32,
    },
    /// `pg_logical_emit_message`'s messages.
    Message {
        transactional: bool,
        lsn: u64,
        prefix: &'a str,
        content: &'a [u8],
    },
}

/// What the old tuple of an update or delete holds.
#[derive(Debug, PartialEq, Clone, Copy)]
pub enum OldKind {
    /// The replica identity's key columns (others are null).
    Key,
    /// Every column (REPLICA IDENTITY FULL).
    Full,
}

#[derive(Debug, PartialEq)]
pub struct Relation<'a> {
    pub id: u32,
    pub namespace: &'a str,
    pub name: &'a str,
    /// `d` default, `n` nothing, `f` full, `i` index (pg_class.relreplident).
    pub replica_identity: u8,
    pub columns: Vec<Column<'a>>,
}

#[derive(Debug, PartialEq)]
pub struct Column<'a> {
    /// Part of the replica identity.
    pub key: bool,
    pub name: &'a str,
    pub type_oid: u32,
    pub type_modifier: i32,
}

/// A row's values, in the relation's column order.
pub type Tuple<'a> = Vec<Value<'a>>;

#[derive(Debug, PartialEq, Clone, Copy)]
pub enum Value<'a> {
    Null,
    /// A TOASTed value the change did not touch: the server did not send it.
    Unchanged,
    /// The type's text output.
    Text(&'a [u8]),
    /// The type's binary send format (only when the binary option is asked for).
    Binary(&'a [u8]),
}

/// Decodes one message.
pub fn decode(bytes: &[u8]) -> Result<Message<'_>> {
    decode_with(bytes, false).map(|(_, m)| m)
}

/// A message inside a streamed transaction's block, with the xid its change carries (none for
/// Stream Stop).
pub fn decode_streamed(bytes: &[u8]) -> Result<(Option<u32>, Message<'_>)> {
    decode_with(bytes, true)
}

fn decode_with(bytes: &[u8], streamed: bool) -> Result<(Option<u32>, Message<'_>)> {
    let mut c = Cursor { b: bytes, at: 0 };
    let tag = c.u8()?;
    let xid = match streamed && matches!(tag, b'R' | b'Y' | b'I' | b'U' | b'D' | b'T' | b'M') {
        true => Some(c.u32()?),
        false => None,
    };
    let m = match tag {
        b'S' => Message::StreamStart {
            xid: c.u32()?,
            first: c.u8()? == 1,
        },
        b'E' => Message::StreamStop,
        b'c' => {
            let xid = c.u32()?;
            c.u8()?; // flags, unused
            Message::StreamCommit {
                xid,
                commit_lsn: c.u64()?,
                end_lsn: c.u64()?,
                commit_time: c.i64()?,
            }
        }
        b'A' => Message::StreamAbort {
            xid: c.u32()?,
            subxid: c.u32()?,
        },
        b'B' => Message::Begin {
            final_lsn: c.u64()?,
            commit_time: c.i64()?,
            xid: c.u32()?,
        },
        b'C' => {
            c.u8()?; // flags, unused
            Message::Commit {
                commit_lsn: c.u64()?,
                end_lsn: c.u64()?,
                commit_time: c.i64()?,
            }
        }
        b'O' => Message::Origin {
            lsn: c.u64()?,
            name: c.string()?,
        },
        b'R' => Message::Relation(relation(&mut c)?),
        b'Y' => Message::Type {
            oid: c.u32()?,
            namespace: c.string()?,
            name: c.string()?,
        },
        b'I' => {
            let relation = c.u32()?;
            c.expect(b'N')?;
            Message::Insert {
                relation,
                new: c.tuple()?,
            }
        }
        b'U' => update(&mut c)?,
        b'D' => {
            let relation = c.u32()?;
            let kind = old_kind(c.u8()?)?;
            Message::Delete {
                relation,
                old: (kind, c.tuple()?),
            }
        }
        b'T' => {
            let n = c.u32()?;
            let options = c.u8()?;
            let relations = (0..n).map(|_| c.u32()).collect::<Result<Vec<_>>>()?;
            Message::Truncate {
                relations,
                cascade: options & 1 != 0,
                restart_identity: options & 2 != 0,
            }
        }
        b'M' => {
            let transactional = c.u8()? & 1 != 0;
            let lsn = c.u64()?;
            let prefix = c.string()?;
            let len = c.u32()? as usize;
            Message::Message {
                transactional,
                lsn,
                prefix,
                content: c.take(len)?,
            }
        }
        t => bail!(
            "unknown pgoutput message {:?} (protocol versions above 2 are not asked for)",
            t as char
        ),
    };
    if c.at != bytes.len() {
        bail!(
            "pgoutput message {:?}: {} bytes left over",
            tag as char,
            bytes.len() - c.at
        );
    }
    Ok((xid, m))
}

fn relation<'a>(c: &mut Cursor<'a>) -> Result<Relation<'a>> {
    let id = c.u32()?;
    let namespace = c.string()?;
    let name = c.string()?;
    let replica_identity = c.u8()?;
    let n = c.u16()?;
    let mut columns = Vec::with_capacity(n.into());
    for _ in 0..n {
        columns.push(Column {
            key: c.u8()? & 1 != 0,
            name: c.string()?,
            type_oid: c.u32()?,
            type_modifier: c.i32()?,
        });
    }
    Ok(Relation {
        id,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn update<'a>(c: &mut Cursor<'a>) -> Result<Message<'a>> {
    let relation = c.u32()?;
    let old = match c.u8()? {
        b'N' => None,
        k => {
            let kind = old_kind(k)?;
            let t = c.tuple()?;
            c.expect(b'N')?;
            Some((kind, t))
        }
    };
    Ok(Message::Update {
        relation,
        old,
        new: c.tuple()?,
    })
}

fn old_kind(b: u8) -> Result<OldKind> {
    match b {
        b'K' => Ok(OldKind::Key),
        b'O' => Ok(OldKind::Full),
        b => bail!(
            "pgoutput: expected an old tuple (K or O), found {:?}",
            b as char
        ),
    }
}

/// Reads a message front to back; every read checks the length.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let Some(s) = self.b.get(self.at..self.at.saturating_add(n)) else {
            bail!("pgoutput message cut short at byte {}", self.at);
        };
        self.at += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into()?))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into()?))
    }

    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into()?))
    }

    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into()?))
    }

    fn expect(&mut self, want: u8) -> Result<()> {
        let got = self.u8()?;
        if got != want {
            bail!(
                "pgoutput: expected {:?}, found {:?} at byte {}",
                want as char,
                got as char,
                self.at - 1
            );
        }
        Ok(())
    }

    fn string(&mut self) -> Result<&'a str> {
        let rest = &self.b[self.at.min(self.b.len())..];
        let Some(end) = rest.iter().position(|&b| b == 0) else {
            bail!(
                "pgoutput: a string without its terminating NUL at byte {}",
                self.at
            );
        };
        let s = std::str::from_utf8(&rest[..end])?;
        self.at += end + 1;
        Ok(s)
    }

    fn tuple(&mut self) -> Result<Tuple<'a>> {
        let n = self.u16()?;
        let mut values = Vec::with_capacity(n.into());
        for _ in 0..n {
            values.push(match self.u8()? {
                b'n' => Value::Null,
                b'u' => Value::Unchanged,
                b't' => {
                    let len = self.u32()? as usize;
                    Value::Text(self.take(len)?)
                }
                b'b' => {
                    let len = self.u32()? as usize;
                    Value::Binary(self.take(len)?)
                }
                k => bail!("pgoutput: unknown column kind {:?}", k as char),
            });
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of a message as the spec lays them out.
    #[derive(Default)]
    struct Msg(Vec<u8>);

    impl Msg {
        fn b(mut self, v: u8) -> Self {
            self.0.push(v);
            self
        }
        fn i16(mut self, v: u16) -> Self {
            self.0.extend(v.to_be_bytes());
            self
        }
        fn i32(mut self, v: u32) -> Self {
            self.0.extend(v.to_be_bytes());
            self
        }
        fn i64(mut self, v: u64) -> Self {
            self.0.extend(v.to_be_bytes());
            self
        }
        fn s(mut self, v: &str) -> Self {
            self.0.extend(v.as_bytes());
            self.0.push(0);
            self
        }
        fn text(self, v: &str) -> Self {
            let mut m = self.b(b't').i32(v.len() as u32);
            m.0.extend(v.as_bytes());
            m
        }
    }

    #[test]
    fn begin_and_commit() {
        let m = Msg::default().b(b'B').i64(0x1_6B37_4D48).i64(7).i32(735);
        assert_eq!(
            decode(&m.0).unwrap(),
            Message::Begin {
                final_lsn: 0x1_6B37_4D48,
                commit_time: 7,
                xid: 735
            }
        );
        let m = Msg::default().b(b'C').b(0).i64(10).i64(20).i64(30);
        assert_eq!(
            decode(&m.0).unwrap(),
            Message::Commit {
                commit_lsn: 10,
                end_lsn: 20,
                commit_time: 30
            }
        );
    }

    #[test]
    fn a_relation_then_rows_with_every_kind_of_value() {
        let r = Msg::default()
            .b(b'R')
            .i32(16390)
            .s("public")
            .s("users")
            .b(b'd')
            .i16(2)
            .b(1)
            .s("id")
            .i32(23)
            .i32(u32::MAX)
            .b(0)
            .s("bio")
            .i32(25)
            .i32(u32::MAX);
        let Message::Relation(rel) = decode(&r.0).unwrap() else {
            panic!()
        };
        assert_eq!(
            (rel.namespace, rel.name, rel.replica_identity),
            ("public", "users", b'd')
        );
        assert!(rel.columns[0].key && !rel.columns[1].key);
        assert_eq!((rel.columns[1].name, rel.columns[1].type_oid), ("bio", 25));
        assert_eq!(rel.columns[0].type_modifier, -1);

        let ins = Msg::default()
            .b(b'I')
            .i32(16390)
            .b(b'N')
            .i16(2)
            .text("1")
            .b(b'n');
        assert_eq!(
            decode(&ins.0).unwrap(),
            Message::Insert {
                relation: 16390,
                new: vec![Value::Text(b"1"), Value::Null]
            }
        );
        // An update that changed the key: the old key first; the TOASTed bio unchanged.
        let upd = Msg::default()
            .b(b'U')
            .i32(16390)
            .b(b'K')
            .i16(2)
            .text("1")
            .b(b'n')
            .b(b'N')
            .i16(2)
            .text("2")
            .b(b'u');
        assert_eq!(
            decode(&upd.0).unwrap(),
            Message::Update {
                relation: 16390,
                old: Some((OldKind::Key, vec![Value::Text(b"1"), Value::Null])),
                new: vec![Value::Text(b"2"), Value::Unchanged]
            }
        );
        let plain = Msg::default().b(b'U').i32(16390).b(b'N').i16(1).text("");
        assert!(matches!(
            decode(&plain.0).unwrap(),
            Message::Update { old: None, .. }
        ));
        let del = Msg::default().b(b'D').i32(16390).b(b'O').i16(1).text("2");
        assert_eq!(
            decode(&del.0).unwrap(),
            Message::Delete {
                relation: 16390,
                old: (OldKind::Full, vec![Value::Text(b"2")])
            }
        );
    }

    #[test]
    fn truncate_and_logical_messages() {
        let t = Msg::default().b(b'T').i32(2).b(3).i32(1).i32(2);
        assert_eq!(
            decode(&t.0).unwrap(),
            Message::Truncate {
                relations: vec![1, 2],
                cascade: true,
                restart_identity: true
            }
        );
        let mut m = Msg::default().b(b'M').b(1).i64(99).s("weir.ddl").i32(3);
        m.0.extend(b"abc");
        assert_eq!(
            decode(&m.0).unwrap(),
            Message::Message {
                transactional: true,
                lsn: 99,
                prefix: "weir.ddl",
                content: b"abc"
            }
        );
    }

    #[test]
    fn streamed_changes_carry_their_xid() {
        let ins = Msg::default()
            .b(b'I')
            .i32(7)
            .i32(1)
            .b(b'N')
            .i16(1)
            .text("hi");
        let (xid, m) = decode_streamed(&ins.0).unwrap();
        assert_eq!(xid, Some(7));
        assert!(matches!(m, Message::Insert { relation: 1, .. }));
        let commit = Msg::default().b(b'c').i32(7).b(0).i64(10).i64(20).i64(30);
        assert_eq!(
            decode(&commit.0).unwrap(),
            Message::StreamCommit {
                xid: 7,
                commit_lsn: 10,
                end_lsn: 20,
                commit_time: 30
            }
        );
        let abort = Msg::default().b(b'A').i32(7).i32(9);
        assert_eq!(
            decode(&abort.0).unwrap(),
            Message::StreamAbort { xid: 7, subxid: 9 }
        );
        assert_eq!(decode_streamed(b"E").unwrap(), (None, Message::StreamStop));
    }

    #[test]
    fn damage_is_an_error_never_a_short_row() {
        let ins = Msg::default().b(b'I').i32(1).b(b'N').i16(1).text("hello");
        for cut in 1..ins.0.len() {
            assert!(decode(&ins.0[..cut]).is_err(), "cut at {cut} decoded");
        }
        let mut long = ins.0.clone();
        long.push(0);
        assert!(decode(&long).unwrap_err().to_string().contains("left over"));
        assert!(
            decode(b"Z\0\0\0\x01")
                .unwrap_err()
                .to_string()
                .contains("unknown pgoutput message")
        );
        let no_nul = Msg::default().b(b'O').i64(1).0;
        let mut no_nul = no_nul;
        no_nul.extend(b"origin");
        assert!(decode(&no_nul).is_err());
    }
}
