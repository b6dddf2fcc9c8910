//! One big table read by several connections at once: its pages cut into ranges, each read
//! by a TID range scan (`WHERE ctid >= '(a,0)' AND ctid < '(b,0)'`, PostgreSQL 14 and later;
//! older servers would scan the whole table for each range). weir-extract and the initial
//! copy of weir-cdc both cut work this way.

/// Tables above twice this many pages (128 MiB of 8 kB pages) are split into ranges.
pub const RANGE_PAGES: i64 = 16384;

/// The first server version with TID range scans (release notes of PostgreSQL 14).
const TID_RANGE_SCANS: u32 = 140000;

/// The `ctid` conditions that cover a table of `pages` pages in ranges of `range` pages, or
/// `None` when it is read whole (small enough, or a server without TID range scans).
pub fn split(pages: i64, range: i64, server_num: u32) -> Option<Vec<String>> {
    if server_num < TID_RANGE_SCANS || range <= 0 || pages <= 2 * range {
        return None;
    }
    let mut out = Vec::new();
    let mut start = 0;
    while start < pages {
        let end = start + range;
        let mut cond = format!("ctid >= '({start},0)'::pg_catalog.tid");
        // The last range is open-ended: pages added since the size was read hold no rows the
        // snapshot can see, and leaving the range open costs nothing.
        if end < pages {
            cond.push_str(&format!(" AND ctid < '({end},0)'::pg_catalog.tid"));
        }
        out.push(cond);
        start = end;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_tables_and_old_servers_are_read_whole() {
        assert!(split(20, 10, 150000).is_none());
        assert!(split(1000, 10, 130000).is_none());
    }

    #[test]
    fn ranges_cover_every_page_and_the_last_is_open() {
        let r = split(25, 10, 150000).unwrap();
        assert_eq!(
            r,
            [
                "ctid >= '(0,0)'::pg_catalog.tid AND ctid < '(10,0)'::pg_catalog.tid",
                "ctid >= '(10,0)'::pg_catalog.tid AND ctid < '(20,0)'::pg_catalog.tid",
                "ctid >= '(20,0)'::pg_catalog.tid",
            ]
        );
    }
}
