//! How a stream of unknown length is cut into multipart-upload parts, and how many of those
//! parts may be in memory at once. Pure arithmetic, kept apart so it can be tested exhaustively.
//!
//! S3 allows at most 10,000 parts of 5 MiB to 5 GiB each (the last part may be smaller) and an
//! object of at most 5 TiB. A fixed part size therefore caps the stream: 8 MiB parts stop at
//! 78 GiB, which is why `aws s3 cp -` needs `--expected-size`. Here the part size doubles every
//! 1,000 parts, starting at 8 MiB: small streams use small parts (little memory, early
//! concurrency), and the 10,000 parts reach 7.8 TiB, beyond the 5 TiB object limit.

/// One mebibyte; part sizes and memory budgets are whole MiB.
pub const MIB: u64 = 1 << 20;
/// S3's smallest part (all but the last).
pub const MIN_PART: u64 = 5 * MIB;
/// S3's largest part.
pub const MAX_PART: u64 = 5 * 1024 * MIB;
/// S3's part-count limit.
pub const MAX_PARTS: u32 = 10_000;
/// S3's object-size limit.
pub const MAX_OBJECT: u64 = 5 * 1024 * 1024 * MIB;
/// The first part size when nothing is known about the stream (the AWS CLI's default too).
pub const BASE_PART: u64 = 8 * MIB;
/// The part size doubles after this many parts.
const PARTS_PER_STEP: u32 = 1_000;

/// The part-size schedule of one upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartPlan {
    base: u64,
}

impl PartPlan {
    /// The plan for a stream of `expected` bytes, if known: the smallest whole-MiB part size
    /// (at least [`BASE_PART`]) that fits the stream into 9,000 parts, leaving 1,000 doubling
    /// parts of headroom in case the estimate was low.
    pub fn new(expected: Option<u64>) -> PartPlan {
        let base = match expected {
            Some(n) => {
                let per_part = n.div_ceil(u64::from(MAX_PARTS - PARTS_PER_STEP));
                per_part.div_ceil(MIB).max(1) * MIB
            }
            None => BASE_PART,
        };
        PartPlan {
            base: base.clamp(BASE_PART, MAX_PART),
        }
    }

    /// The size of part `n` (1-based).
    pub fn size(&self, n: u32) -> u64 {
        let step = (n.saturating_sub(1) / PARTS_PER_STEP).min(20);
        (self.base << step).min(MAX_PART)
    }

    /// The largest stream the 10,000 parts of this plan can carry.
    pub fn capacity(&self) -> u64 {
        (1..=MAX_PARTS).map(|n| self.size(n)).sum()
    }
}

/// How many parts may be uploading at once: the budget holds those plus the part being filled
/// from the input. At least one part always uploads, so a part larger than the whole budget
/// still goes through (the budget is then exceeded by that part, and the help says so).
pub fn parts_in_flight(budget: u64, part: u64, jobs: u32) -> u32 {
    let fit = (budget / part.max(1)).saturating_sub(1);
    (fit.min(u64::from(jobs)) as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_stream_up_to_the_object_limit_fits_in_10000_parts() {
        let plan = PartPlan::new(None);
        assert_eq!(plan.size(1), 8 * MIB);
        assert_eq!(plan.size(1000), 8 * MIB);
        assert_eq!(plan.size(1001), 16 * MIB);
        assert_eq!(plan.size(10_000), 4096 * MIB);
        assert!(plan.capacity() >= MAX_OBJECT, "{}", plan.capacity());
        for n in 1..=MAX_PARTS {
            let s = plan.size(n);
            assert!((MIN_PART..=MAX_PART).contains(&s) && s % MIB == 0);
        }
    }

    #[test]
    fn an_expected_size_picks_even_parts_with_headroom() {
        // 1 TiB known up front: 117 MiB parts; 9,000 of them hold it.
        let tib = 1024 * 1024 * MIB;
        let plan = PartPlan::new(Some(tib));
        assert!(plan.size(1) * 9_000 >= tib && plan.size(1) < 8 * MIB + tib / 9_000);
        assert!(plan.capacity() >= tib);
        // Small expectations keep the default.
        assert_eq!(PartPlan::new(Some(1)).size(1), BASE_PART);
        // Absurd expectations are capped at S3's part limit.
        assert_eq!(PartPlan::new(Some(u64::MAX)).size(1), MAX_PART);
    }

    #[test]
    fn the_budget_bounds_the_parts_in_flight() {
        assert_eq!(parts_in_flight(64 * MIB, 8 * MIB, 16), 7);
        assert_eq!(parts_in_flight(64 * MIB, 8 * MIB, 4), 4);
        assert_eq!(parts_in_flight(16 * MIB, 16 * MIB, 4), 1);
        assert_eq!(parts_in_flight(16 * MIB, 4096 * MIB, 4), 1);
    }
}
