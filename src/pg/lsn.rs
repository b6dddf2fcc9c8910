//! A WAL position (log sequence number) as a type: PostgreSQL's `X/Y` text form (pg_lsn's
//! input and output, src/backend/utils/adt/pg_lsn.c) in both directions, so positions are
//! never bare integers passed in the wrong order.

use anyhow::{Result, anyhow, bail};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    pub const ZERO: Lsn = Lsn(0);

    pub fn parse(s: &str) -> Result<Lsn> {
        let bad = || anyhow!("not an LSN: {s:?}");
        let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
        let hi = u64::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| bad())?;
        if hi > u32::MAX as u64 || lo > u32::MAX as u64 {
            bail!("not an LSN: {s:?}");
        }
        Ok(Lsn(hi << 32 | lo))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl std::str::FromStr for Lsn {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Lsn> {
        Lsn::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_in_postgresql_text_form() {
        assert_eq!(Lsn::parse("0/2000028").unwrap(), Lsn(0x2000028));
        assert_eq!(Lsn(0x1A_0000_00FF).to_string(), "1A/FF");
        assert!(Lsn::parse("1/2/3").is_err() && Lsn::parse("100000000/0").is_err());
        assert!(Lsn(1) < Lsn(0x1_0000_0000));
    }
}
