//! The files PostgreSQL archives, by name (src/include/access/xlog_internal.h: XLogFileName,
//! TLHistoryFileName, BackupHistoryFileName, and `.partial` segments from a promotion), and
//! what a segment's first page says about the cluster that wrote it.

use anyhow::{Result, bail};

/// What an archived file is, from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `TTTTTTTTXXXXXXXXYYYYYYYY`: a WAL segment.
    Segment,
    /// `TTTTTTTTXXXXXXXXYYYYYYYY.partial`: the last, incomplete segment of a timeline.
    Partial,
    /// `TTTTTTTT.history`: a timeline's history; never overwritten.
    History,
    /// `TTTTTTTTXXXXXXXXYYYYYYYY.OOOOOOOO.backup`: a base backup's history file.
    Backup,
}

/// An archived file's name, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalName {
    pub name: String,
    pub kind: Kind,
    pub timeline: u32,
}

fn hex_digits(s: &str, n: usize) -> bool {
    s.len() == n
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())
}

impl WalName {
    pub fn parse(name: &str) -> Result<WalName> {
        let kind = if hex_digits(name, 24) {
            Kind::Segment
        } else if name.len() == 32 && name.ends_with(".partial") && hex_digits(&name[..24], 24) {
            Kind::Partial
        } else if name.len() == 16 && name.ends_with(".history") && hex_digits(&name[..8], 8) {
            Kind::History
        } else if name.len() == 40
            && name.ends_with(".backup")
            && hex_digits(&name[..24], 24)
            && &name[24..25] == "."
            && hex_digits(&name[25..33], 8)
        {
            Kind::Backup
        } else {
            bail!("{name:?} is not the name of a WAL segment, .partial, .history or .backup file");
        };
        let timeline = u32::from_str_radix(&name[..8], 16).expect("checked hex");
        Ok(WalName {
            name: name.to_string(),
            kind,
            timeline,
        })
    }

    /// Segments and partial segments carry a page header to check; the others are text.
    pub fn has_header(&self) -> bool {
        matches!(self.kind, Kind::Segment | Kind::Partial)
    }

    /// Where a segment starts in the WAL, from its name, for `segment_size`-byte segments.
    pub fn start_address(&self, segment_size: u32) -> u64 {
        segment_number(&self.name, segment_size) * u64::from(segment_size)
    }
}

/// Segments per log file (the middle eight hex digits of a name): XLogSegmentsPerXLogId.
fn per_log(segment_size: u32) -> u64 {
    0x1_0000_0000u64 / u64::from(segment_size)
}

/// The segment number a name's log and segment digits give (XLogFromFileName); the name's
/// first 24 characters must be hex, as [`WalName::parse`] checks.
pub fn segment_number(name: &str, segment_size: u32) -> u64 {
    let h = |a: usize| u64::from_str_radix(&name[a..a + 8], 16).unwrap_or(0);
    h(8) * per_log(segment_size) + h(16)
}

/// The name of segment `segno` on `timeline` (XLogFileName).
pub fn segment_name(timeline: u32, segno: u64, segment_size: u32) -> String {
    let per = per_log(segment_size);
    format!("{timeline:08X}{:08X}{:08X}", segno / per, segno % per)
}

/// What the long header on a segment's first page says (XLogLongPageHeaderData).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub major: u32,
    /// xlp_pageaddr: the WAL position of the first page, which the file's name must match.
    pub page_address: u64,
    pub system_identifier: u64,
    pub segment_size: u32,
    pub timeline: u32,
}

/// XLOG_PAGE_MAGIC of each major version, the WAL format's own version number.
const MAGICS: &[(u16, u32)] = &[
    (0xD101, 12),
    (0xD106, 13),
    (0xD10D, 14),
    (0xD110, 15),
    (0xD113, 16),
    (0xD116, 17),
    (0xD118, 18),
];

/// XLP_LONG_HEADER in xlp_info.
const LONG_HEADER: u16 = 0x0002;

/// Reads the long page header at the start of a segment (little-endian, as the platforms
/// PostgreSQL runs on here write it): magic, info, timeline, page address, remaining length,
/// padding, then system identifier, segment size and WAL block size.
pub fn segment_header(b: &[u8]) -> Result<SegmentHeader> {
    if b.len() < 40 {
        bail!("too short for a WAL segment ({} bytes)", b.len());
    }
    let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let magic = u16_at(0);
    let Some(&(_, major)) = MAGICS.iter().find(|(m, _)| *m == magic) else {
        bail!("not a WAL segment of PostgreSQL 12 to 18 (page magic {magic:#06X})");
    };
    if u16_at(2) & LONG_HEADER == 0 {
        bail!("the first page has no long header, so this is not the start of a segment");
    }
    let segment_size = u32_at(32);
    if !segment_size.is_power_of_two() || !(1 << 20..=1 << 30).contains(&segment_size) {
        bail!("the header's segment size {segment_size} is not one PostgreSQL allows");
    }
    Ok(SegmentHeader {
        major,
        page_address: u64::from_le_bytes(b[8..16].try_into().unwrap()),
        system_identifier: u64::from_le_bytes(b[24..32].try_into().unwrap()),
        segment_size,
        timeline: u32_at(4),
    })
}

/// The system identifier in a data directory's `global/pg_control` (ControlFileData's first
/// field), for fetch to know which cluster asks.
pub fn control_system_identifier(data_dir: &std::path::Path) -> Result<u64> {
    let path = data_dir.join("global/pg_control");
    let b =
        std::fs::read(&path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    if b.len() < 8 {
        bail!("{} is too short", path.display());
    }
    Ok(u64::from_le_bytes(b[..8].try_into().unwrap()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_every_archived_kind() {
        let seg = WalName::parse("000000010000000A000000FF").unwrap();
        assert_eq!((seg.kind, seg.timeline), (Kind::Segment, 1));
        assert_eq!(
            WalName::parse("0000000200000000000000A1.partial")
                .unwrap()
                .kind,
            Kind::Partial
        );
        let h = WalName::parse("0000000A.history").unwrap();
        assert_eq!((h.kind, h.timeline), (Kind::History, 10));
        assert_eq!(
            WalName::parse("000000010000000000000002.00000028.backup")
                .unwrap()
                .kind,
            Kind::Backup
        );
        for bad in [
            "00000001000000000000000",
            "000000010000000a000000ff",
            "../etc/passwd",
            "00000001.history.x",
            "000000010000000000000002.backup",
        ] {
            assert!(WalName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn segment_numbers_and_names_are_inverse() {
        let n = segment_number("0000000300000001000000FE", 16 << 20);
        assert_eq!(n, 0x1FE);
        assert_eq!(segment_name(3, n + 2, 16 << 20), "000000030000000200000000");
        assert_eq!(segment_name(1, 4, 1 << 30), "000000010000000100000000");
    }

    #[test]
    fn reads_the_long_page_header() {
        let mut b = vec![0u8; 64];
        b[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
        b[2..4].copy_from_slice(&LONG_HEADER.to_le_bytes());
        b[4..8].copy_from_slice(&3u32.to_le_bytes());
        b[24..32].copy_from_slice(&7301234567890123456u64.to_le_bytes());
        b[32..36].copy_from_slice(&(16u32 << 20).to_le_bytes());
        let h = segment_header(&b).unwrap();
        assert_eq!(
            h,
            SegmentHeader {
                major: 15,
                page_address: 0,
                system_identifier: 7301234567890123456,
                segment_size: 16 << 20,
                timeline: 3
            }
        );
        b[2] = 0;
        assert!(segment_header(&b).is_err());
        b[0] = 0;
        assert!(
            segment_header(&b)
                .unwrap_err()
                .to_string()
                .contains("page magic")
        );
    }
}
