//! Reading again: what the store does when a read's answer broke off or its bytes are not what
//! they should be. Three layers, each retrying only what the one below cannot see:
//!
//! 1. The AWS SDK retries a request that failed: `5xx`, `SlowDown`, a lost connection, a
//!    timeout (`max_attempts`, 5, in all).
//! 2. The SDK hands a `GetObject` over once the answer's head has arrived: a body that breaks
//!    off afterwards, or an answer that is not the range asked for, is
//!    [`StoreError::Transfer`], and the S3 backend sends that one request again ([`again`]
//!    with [`broke_off`]), each ranged request on its own, so one cut body does not cost the
//!    others of its batch.
//! 3. A body can arrive whole and still be wrong: S3 answers some requests `200` with an error
//!    document, and proxies and networks damage bytes. Every frame is verified against its id
//!    anyway; [`ObjectStore`](super::ObjectStore) reads again the frames that fail, and only
//!    those ([`read_checked`]), and a pack that does not hash to its name ([`again`] with
//!    [`damaged`]). A frame is corrupt ([`StoreError::Integrity`]) only when every read gave
//!    the same wrong bytes; wrong bytes that changed from read to read were damaged on the way,
//!    not in the store: [`StoreError::Transfer`].
//!
//! Each layer makes [`READ_ATTEMPTS`] (or the SDK's `max_attempts`) tries in all, with short
//! pauses, and a failure that a lower layer has already retried is final for the layers above.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use sync_protocol::{CompressError, ObjectId};

use super::{Result, StoreError, VerifiedObject};
use crate::catalog::ProjectId;

/// Tries of the same read in all, the first included, in each of the two layers above the
/// SDK. S3 at its worst in the tests (a fault in 20% of requests, a sixth of them bodies cut
/// short and a sixth damaged) spoils one try in thirty at each layer: four in a row, one in
/// 800,000. The pauses between them add up to at most 350 ms.
pub const READ_ATTEMPTS: u32 = 4;

/// The ceiling of the pause before the second try; doubled before each further one.
const FIRST_PAUSE: Duration = Duration::from_millis(50);

/// An object read and checked: the verified object, or why its bytes are not the object,
/// with the bytes (to compare with the next read's).
pub type Checked = Result<VerifiedObject, (CompressError, Bytes)>;

/// Pauses before try `attempt + 1`: equal jitter over a ceiling of 50 ms, 100 ms, ...
async fn pause(attempt: u32) {
    let ceiling = FIRST_PAUSE.saturating_mul(1 << attempt.saturating_sub(1).min(6));
    let half = ceiling / 2;
    tokio::time::sleep(half + half.mul_f64(rand::random::<f64>())).await;
}

/// An answer that broke off or was not the answer to the request.
pub fn broke_off(error: &StoreError) -> bool {
    matches!(error, StoreError::Transfer { .. })
}

/// A pack read whole, or its contents, that is not what its name or footer says: damaged in
/// the store or on the way, which only reading again tells apart.
pub fn damaged(error: &StoreError) -> bool {
    matches!(error, StoreError::PackIntegrity { .. })
}

/// Runs `read` again while it fails with an error `worth_again` names: [`READ_ATTEMPTS`]
/// times in all. The last error stands.
pub async fn again<T, R, Fut>(worth_again: fn(&StoreError) -> bool, mut read: R) -> Result<T>
where
    R: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 1;
    loop {
        match read().await {
            Err(error) if attempt < READ_ATTEMPTS && worth_again(&error) => {
                tracing::debug!(attempt, %error, "reading again");
                pause(attempt).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// Reads and checks `items` with `read` (each item's checked object, in order; `None` where
/// absent), reading again the items whose bytes failed, [`READ_ATTEMPTS`] reads in all. Each
/// item's result: `None` if absent, else its verified object or, after the last read, why its
/// bytes (the same every time) are not it. A failed `read` is final: the layers below have
/// retried it.
pub async fn read_checked<L, R, Fut>(
    project: &ProjectId,
    items: &[L],
    id_of: fn(&L) -> ObjectId,
    mut read: R,
) -> Result<Vec<Option<Result<VerifiedObject, CompressError>>>>
where
    L: Copy,
    R: FnMut(Vec<L>) -> Fut,
    Fut: Future<Output = Result<Vec<Option<Checked>>>>,
{
    let mut results: Vec<Option<Result<VerifiedObject, CompressError>>> =
        items.iter().map(|_| None).collect();
    // The wrong bytes of each item's last read, and whether they ever changed.
    let mut wrong: Vec<Option<Bytes>> = vec![None; items.len()];
    let mut changed = vec![false; items.len()];
    let mut pending: Vec<usize> = (0..items.len()).collect();
    let mut attempt = 1;
    while !pending.is_empty() {
        let wanted: Vec<L> = pending.iter().map(|&index| items[index]).collect();
        let checked = read(wanted).await?;
        let mut again = Vec::new();
        for (index, outcome) in pending.iter().copied().zip(checked) {
            results[index] = match outcome {
                None => None,
                Some(Ok(object)) => Some(Ok(object)),
                Some(Err((error, bytes))) => {
                    if wrong[index].as_ref().is_some_and(|before| *before != bytes) {
                        changed[index] = true;
                    }
                    wrong[index] = Some(bytes);
                    again.push(index);
                    Some(Err(error))
                }
            };
        }
        pending = again;
        let Some(&first) = pending.first() else {
            break;
        };
        if attempt >= READ_ATTEMPTS {
            break;
        }
        tracing::warn!(
            %project,
            object = %id_of(&items[first]),
            failed = pending.len(),
            attempt,
            "stored frames failed verification; reading them again"
        );
        pause(attempt).await;
        attempt += 1;
    }
    if let Some(&index) = pending.iter().find(|&&index| changed[index]) {
        return Err(StoreError::Transfer {
            operation: "read",
            key: format!("object {} of project {project}", id_of(&items[index])),
            message: format!(
                "{READ_ATTEMPTS} reads gave different bytes, none of them the object: the \
                 answers were damaged, not the stored frame"
            ),
        });
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use sync_protocol::{Object, compress_object};

    use super::*;

    fn object(text: &str) -> (ObjectId, Bytes) {
        let object = Object::Chunk(text.as_bytes().to_vec());
        (object.id(), Bytes::from(compress_object(&object.encode())))
    }

    fn check(id: &ObjectId, frame: Bytes) -> Checked {
        match sync_protocol::verify_frame(id, &frame) {
            Ok((object, _)) => Ok(VerifiedObject { frame, object }),
            Err(error) => Err((error, frame)),
        }
    }

    fn transfer() -> StoreError {
        StoreError::Transfer {
            operation: "get",
            key: "k".to_owned(),
            message: "cut".to_owned(),
        }
    }

    #[tokio::test]
    async fn wrong_frames_are_read_again_and_only_they() {
        let project = ProjectId::random();
        let (good, frame) = object("good");
        let (other, other_frame) = object("other");
        let (absent, _) = object("absent");
        let reads = AtomicU32::new(0);
        let asked = std::sync::Mutex::new(Vec::new());
        // Reads 1 and 2 give `good` two different error documents, read 3 its frame.
        let results = read_checked(
            &project,
            &[good, other, absent],
            |id| *id,
            |wanted| {
                let read = reads.fetch_add(1, Ordering::SeqCst);
                asked.lock().unwrap().push(wanted.len());
                let (frame, other_frame) = (frame.clone(), other_frame.clone());
                async move {
                    Ok(wanted
                        .iter()
                        .map(|id| match id {
                            id if *id == good && read < 2 => {
                                Some(check(id, Bytes::from(format!("<Error>{read}</Error>"))))
                            }
                            id if *id == good => Some(check(id, frame.clone())),
                            id if *id == other => Some(check(id, other_frame.clone())),
                            _ => None,
                        })
                        .collect())
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(
            *asked.lock().unwrap(),
            [3, 1, 1],
            "only the failed frame again"
        );
        assert!(matches!(&results[0], Some(Ok(object)) if object.frame == frame));
        assert!(matches!(&results[1], Some(Ok(object)) if object.frame == other_frame));
        assert!(results[2].is_none(), "absent stays absent");
    }

    #[tokio::test]
    async fn the_same_wrong_bytes_every_time_are_corruption_and_changing_ones_are_not() {
        let project = ProjectId::random();
        let (id, _) = object("stored");
        let reads = AtomicU32::new(0);
        let same = read_checked(
            &project,
            &[id],
            |id| *id,
            |wanted| {
                reads.fetch_add(1, Ordering::SeqCst);
                async move {
                    Ok(wanted
                        .iter()
                        .map(|id| Some(check(id, Bytes::from_static(b"rotten"))))
                        .collect())
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), READ_ATTEMPTS);
        assert!(matches!(same[0], Some(Err(CompressError::NotAFrame))));

        let reads = AtomicU32::new(0);
        let changing = read_checked(
            &project,
            &[id],
            |id| *id,
            |wanted| {
                let read = reads.fetch_add(1, Ordering::SeqCst);
                async move {
                    let bytes = Bytes::from(format!("garbage {read}"));
                    Ok(wanted
                        .iter()
                        .map(|id| Some(check(id, bytes.clone())))
                        .collect())
                }
            },
        )
        .await;
        assert!(matches!(changing, Err(StoreError::Transfer { .. })));
        assert_eq!(reads.load(Ordering::SeqCst), READ_ATTEMPTS);
    }

    #[tokio::test]
    async fn a_failed_read_is_final_for_the_checks() {
        let project = ProjectId::random();
        let (id, _) = object("x");
        let reads = AtomicU32::new(0);
        let broken = read_checked(
            &project,
            &[id],
            |id| *id,
            |_| {
                reads.fetch_add(1, Ordering::SeqCst);
                async { Err::<Vec<Option<Checked>>, _>(transfer()) }
            },
        )
        .await;
        assert!(matches!(broken, Err(StoreError::Transfer { .. })));
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "the backend has sent it again already"
        );
    }

    #[tokio::test]
    async fn again_retries_only_what_it_is_told_a_bounded_number_of_times() {
        let reads = AtomicU32::new(0);
        let whole = again(broke_off, || {
            let read = reads.fetch_add(1, Ordering::SeqCst);
            async move { if read < 2 { Err(transfer()) } else { Ok(read) } }
        })
        .await;
        assert_eq!(whole.unwrap(), 2);

        let reads = AtomicU32::new(0);
        let cut: Result<()> = again(broke_off, || {
            reads.fetch_add(1, Ordering::SeqCst);
            async { Err(transfer()) }
        })
        .await;
        assert!(matches!(cut, Err(StoreError::Transfer { .. })));
        assert_eq!(reads.load(Ordering::SeqCst), READ_ATTEMPTS);

        let reads = AtomicU32::new(0);
        let failed: Result<()> = again(broke_off, || {
            reads.fetch_add(1, Ordering::SeqCst);
            async {
                Err(StoreError::S3 {
                    operation: "get",
                    key: "k".to_owned(),
                    message: "500 after the SDK's retries".to_owned(),
                })
            }
        })
        .await;
        assert!(matches!(failed, Err(StoreError::S3 { .. })));
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "the SDK has retried it already"
        );
    }
}
