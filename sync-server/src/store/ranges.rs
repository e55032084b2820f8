//! Coalescing: the byte ranges a read asks for, turned into as few requests as is worth it.
//!
//! On S3 a request costs about 20 ms before its first byte and moves tens of megabytes per
//! second after it, so reading through a gap of 64 KiB costs about a millisecond: less than a
//! second request. Ranges of the same pack that are adjacent, overlap, or are separated by at
//! most [`MAX_GAP`] bytes are therefore fetched as one range and split afterwards. A merged
//! request stops growing at [`MAX_FETCH_LEN`], so a cold load of a large pack becomes several
//! requests run concurrently instead of one long one. The plan is a pure function, the same for
//! every backend, which only fetches each planned range its own way.

use std::ops::Range;

use bytes::Bytes;

use super::pack::PackId;
use super::{Result, StoreError};
use crate::catalog::ProjectId;

/// The largest gap between two ranges of one pack that is read through rather than skipped.
pub const MAX_GAP: u64 = 64 * 1024;

/// The longest request merging makes. A single asked range longer than this is still one
/// request; merging just never grows a request past it.
pub const MAX_FETCH_LEN: u64 = 8 * 1024 * 1024;

/// One request of a plan: a range of one pack, and the asked ranges it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub pack: PackId,
    pub range: Range<u64>,
    /// Indexes into the asked ranges, in the order of their starts.
    pub serves: Vec<usize>,
}

/// The requests that read `reads` (pack, range), merged under [`MAX_GAP`] and
/// [`MAX_FETCH_LEN`], grouped by pack and in the order of their starts. Empty ranges need no
/// request and are served by none.
pub fn plan(reads: &[(PackId, Range<u64>)]) -> Vec<Fetch> {
    plan_with(reads, MAX_GAP, MAX_FETCH_LEN)
}

fn plan_with(reads: &[(PackId, Range<u64>)], max_gap: u64, max_len: u64) -> Vec<Fetch> {
    let mut order: Vec<usize> = (0..reads.len())
        .filter(|&index| !reads[index].1.is_empty())
        .collect();
    order.sort_by_key(|&index| {
        let (pack, range) = &reads[index];
        (*pack, range.start, range.end)
    });
    let mut fetches: Vec<Fetch> = Vec::new();
    for index in order {
        let (pack, range) = &reads[index];
        if let Some(last) = fetches.last_mut()
            && last.pack == *pack
            && range.start <= last.range.end.saturating_add(max_gap)
            && range.end.max(last.range.end) - last.range.start <= max_len
        {
            last.range.end = last.range.end.max(range.end);
            last.serves.push(index);
        } else {
            fetches.push(Fetch {
                pack: *pack,
                range: range.clone(),
                serves: vec![index],
            });
        }
    }
    fetches
}

/// Refuses ranges that end before they start: a caller's mistake, never a read.
pub fn check(reads: &[(PackId, Range<u64>)]) -> Result<()> {
    match reads.iter().find(|(_, range)| range.start > range.end) {
        Some((pack, range)) => Err(StoreError::Backend {
            operation: "read",
            message: format!("range {range:?} of pack {pack} ends before it starts"),
        }),
        None => Ok(()),
    }
}

/// The bytes of each asked range, in the order asked, cut out of `fetched` (the bytes each
/// fetch got, in plan order; no copies). A fetch that came back short, because the pack ends
/// before the range does, is [`StoreError::PackRange`] naming the first asked range it cannot
/// serve; one that came back long means the service ignored the range, and is refused.
pub fn split(
    project: &ProjectId,
    reads: &[(PackId, Range<u64>)],
    fetches: &[Fetch],
    fetched: Vec<Bytes>,
) -> Result<Vec<Bytes>> {
    if fetched.len() != fetches.len() {
        return Err(StoreError::Backend {
            operation: "read",
            message: format!("planned {} reads, got {}", fetches.len(), fetched.len()),
        });
    }
    let mut out = vec![Bytes::new(); reads.len()];
    for (fetch, bytes) in fetches.iter().zip(fetched) {
        let asked = fetch.range.end - fetch.range.start;
        if bytes.len() as u64 > asked {
            return Err(StoreError::Backend {
                operation: "read",
                message: format!(
                    "asked for {asked} bytes of pack {}, got {}",
                    fetch.pack,
                    bytes.len()
                ),
            });
        }
        let got = fetch.range.start + bytes.len() as u64;
        for &index in &fetch.serves {
            let (pack, range) = &reads[index];
            if range.end > got {
                return Err(StoreError::PackRange {
                    project: *project,
                    pack: *pack,
                    start: range.start,
                    end: range.end,
                });
            }
            let start = (range.start - fetch.range.start) as usize;
            let end = (range.end - fetch.range.start) as usize;
            out[index] = bytes.slice(start..end);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: PackId = PackId::from_bytes([1; 32]);
    const B: PackId = PackId::from_bytes([2; 32]);

    fn fetch(pack: PackId, range: Range<u64>, serves: &[usize]) -> Fetch {
        Fetch {
            pack,
            range,
            serves: serves.to_vec(),
        }
    }

    #[test]
    fn ranges_at_most_the_gap_apart_are_one_request() {
        // Adjacent.
        assert_eq!(plan(&[(A, 0..10), (A, 10..20)]), [fetch(A, 0..20, &[0, 1])]);
        // Exactly the gap apart: read through.
        let at_limit = 20 + MAX_GAP;
        assert_eq!(
            plan(&[(A, 10..20), (A, at_limit..at_limit + 5)]),
            [fetch(A, 10..at_limit + 5, &[0, 1])]
        );
        // One byte more: two requests.
        let past = at_limit + 1;
        assert_eq!(
            plan(&[(A, 10..20), (A, past..past + 5)]),
            [fetch(A, 10..20, &[0]), fetch(A, past..past + 5, &[1])]
        );
    }

    #[test]
    fn packs_are_never_merged_and_order_does_not_matter() {
        let reads = [(B, 0..4), (A, 30..40), (A, 0..10), (B, 4..8), (A, 10..12)];
        assert_eq!(
            plan(&reads),
            [fetch(A, 0..40, &[2, 4, 1]), fetch(B, 0..8, &[0, 3])]
        );
    }

    #[test]
    fn overlapping_and_repeated_ranges_share_a_request() {
        let reads = [(A, 5..50), (A, 10..20), (A, 5..50), (A, 40..60)];
        assert_eq!(plan(&reads), [fetch(A, 5..60, &[0, 2, 1, 3])]);
    }

    #[test]
    fn a_request_stops_growing_at_its_limit() {
        let half = MAX_FETCH_LEN / 2;
        // Two halves make exactly the limit; a third range starts a new request.
        let reads = [
            (A, 0..half),
            (A, half..2 * half),
            (A, 2 * half..2 * half + 1),
        ];
        assert_eq!(
            plan(&reads),
            [
                fetch(A, 0..MAX_FETCH_LEN, &[0, 1]),
                fetch(A, MAX_FETCH_LEN..MAX_FETCH_LEN + 1, &[2])
            ]
        );
        // One range longer than the limit is still one request.
        assert_eq!(
            plan(&[(A, 0..3 * MAX_FETCH_LEN)]),
            [fetch(A, 0..3 * MAX_FETCH_LEN, &[0])]
        );
    }

    #[test]
    fn empty_ranges_need_no_request() {
        assert_eq!(plan(&[(A, 7..7)]), []);
        assert_eq!(plan(&[(A, 7..7), (A, 0..3)]), [fetch(A, 0..3, &[1])]);
        let project = ProjectId::from_bytes([0; 16]);
        let reads = [(A, 7..7), (A, 0..3)];
        let parts = split(&project, &reads, &plan(&reads), vec![Bytes::from("abc")]).unwrap();
        assert_eq!(parts, [Bytes::new(), Bytes::from("abc")]);
        let inverted = Range { start: 3, end: 2 };
        assert!(check(&[(A, inverted)]).is_err());
        assert!(check(&reads).is_ok());
    }

    #[test]
    fn split_cuts_each_range_and_names_a_short_one() {
        let project = ProjectId::from_bytes([0; 16]);
        let reads = [(A, 4..6), (B, 0..2), (A, 0..3)];
        let fetches = plan(&reads);
        let fetched = vec![Bytes::from("abcdef"), Bytes::from("xy")];
        assert_eq!(
            split(&project, &reads, &fetches, fetched).unwrap(),
            [Bytes::from("ef"), Bytes::from("xy"), Bytes::from("abc")]
        );
        // Pack A ends after 5 bytes: the range 4..6 cannot be served, 0..3 could.
        let short = vec![Bytes::from("abcde"), Bytes::from("xy")];
        match split(&project, &reads, &fetches, short) {
            Err(StoreError::PackRange {
                pack, start, end, ..
            }) => assert_eq!((pack, start, end), (A, 4, 6)),
            other => panic!("expected a range error, got {other:?}"),
        }
        // More than asked: the service ignored the range.
        let long = vec![Bytes::from("abcdefg"), Bytes::from("xy")];
        assert!(matches!(
            split(&project, &reads, &fetches, long),
            Err(StoreError::Backend { .. })
        ));
    }
}
