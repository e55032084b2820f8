//! Sending a push's objects: one request when they are small, resumable batches when not.
//!
//! - **Small** (at most [`SINGLE_REQUEST_BYTES`] of frames, nothing left over from an earlier
//!   attempt): one `POST .../push` carrying the stream and the commit, one round trip.
//! - **Large**: the push is written to `.cairn/push-journal` first (push id, base version,
//!   root), then the objects go as `POST .../objects` batches of at most [`BATCH_BYTES`],
//!   children first, so every batch the server accepts is stored for good; a reader thread
//!   reads and verifies the next batch from the object cache while the current one is on the
//!   wire. Then `POST .../commits`. The journal is removed once a version is committed.
//! - **Resumed**: while a journal exists (the process was killed, the network broke, or the
//!   push conflicted), the next push first asks the server which objects it lacks, top-down
//!   (`sync_protocol::negotiate`, `POST .../missing`): a stored dir prunes its whole subtree,
//!   so nothing the server already has is sent again. If the journal is for the very same base
//!   and root, its push id is reused, so a push whose commit did land but whose answer was
//!   lost is answered with that version instead of committing twice.

use std::sync::mpsc;

use sync_protocol::ObjectId;
use sync_protocol::negotiate::{NegotiateError, negotiate};
use sync_protocol::stream::{StreamEncoder, StreamError};
use sync_protocol::wire::Committed;

use crate::error::ClientError;
use crate::progress::{Totals, Transfer};
use crate::stores::object_cache::ObjectCache;
use crate::transport::Remote;

/// Pushes whose frames add up to at most this go as one request.
pub const SINGLE_REQUEST_BYTES: u64 = 8 << 20;
/// The most bytes of frames in one upload batch (a single larger object goes alone). The server
/// stores each request's objects as one pack, one S3 PUT: 32 MiB batches keep a large push to
/// two PUTs per 64 MiB, while a push cut off mid-way loses at most one batch of sending.
pub const BATCH_BYTES: u64 = 32 << 20;

/// One stream of frames ready to send.
#[derive(Debug)]
pub struct Batch {
    pub stream: Vec<u8>,
    pub objects: u32,
}

/// The frames of `ids`, in order, as one stream, or `None` when they add up to more than
/// `limit` bytes.
pub fn single_stream(
    objects: &ObjectCache,
    ids: &[ObjectId],
    limit: u64,
) -> Result<Option<Batch>, ClientError> {
    let mut encoder = StreamEncoder::new();
    for id in ids {
        let (kind, frame) = objects.frame_with_kind(id)?;
        if encoder.len() + frame.len() as u64 > limit {
            return Ok(None);
        }
        encoder
            .push(kind, id, &frame)
            .map_err(|source| stream_error(id, source))?;
    }
    let objects = encoder.frame_count();
    Ok(Some(Batch {
        stream: encoder.finish(),
        objects,
    }))
}

fn stream_error(id: &ObjectId, source: StreamError) -> ClientError {
    ClientError::PushStream {
        object: Some(*id),
        source: Box::new(source),
    }
}

/// The ids of `root`'s tree that the server lacks, children first, found by asking it top-down.
pub fn negotiate_missing(
    remote: &Remote,
    project: &str,
    objects: &ObjectCache,
    root: ObjectId,
) -> Result<Vec<ObjectId>, ClientError> {
    negotiate(objects, root, |question| remote.missing(project, question))
        .map(sync_protocol::negotiate::Negotiated::into_upload_order)
        .map_err(|error| match error {
            NegotiateError::Ask(remote) => remote.into(),
            NegotiateError::Answer(answer) => ClientError::Negotiation(answer),
        })
}

/// Uploads `ids` (children first) in batches of at most [`BATCH_BYTES`], reading the next batch
/// on a second thread while one is sent. `send` sends one batch (retrying as the caller sees
/// fit). Returns the objects and stream bytes sent.
pub fn upload_batches(
    remote: &Remote,
    objects: &ObjectCache,
    ids: &[ObjectId],
    mut send: impl FnMut(&Batch) -> Result<(), ClientError>,
) -> Result<(u32, u64), ClientError> {
    let progress = remote.progress().clone();
    progress.start(
        Transfer::Upload,
        Totals {
            objects: Some(ids.len() as u64),
            bytes: None,
        },
    );
    // One batch waits while another is sent: reading never runs more than a batch ahead.
    let (batches, received) = mpsc::sync_channel::<Result<Batch, ClientError>>(1);
    let sent = std::thread::scope(|scope| {
        scope.spawn(move || {
            let result = read_batches(objects, ids, |batch| batches.send(Ok(batch)).is_ok());
            if let Err(error) = result {
                let _ = batches.send(Err(error));
            }
        });
        let mut sent = (0u32, 0u64);
        for batch in received {
            let batch = batch?;
            send(&batch)?;
            progress.advance(u64::from(batch.objects), 0);
            sent.0 += batch.objects;
            sent.1 += batch.stream.len() as u64;
        }
        Ok(sent)
    });
    progress.finish();
    sent
}

/// Reads `ids` into batches, handing each to `deliver`; stops early when `deliver` says so.
fn read_batches(
    objects: &ObjectCache,
    ids: &[ObjectId],
    mut deliver: impl FnMut(Batch) -> bool,
) -> Result<(), ClientError> {
    let mut encoder = StreamEncoder::new();
    for id in ids {
        let (kind, frame) = objects.frame_with_kind(id)?;
        if encoder.frame_count() > 0 && encoder.len() + frame.len() as u64 > BATCH_BYTES {
            let objects = encoder.frame_count();
            let full = std::mem::take(&mut encoder);
            if !deliver(Batch {
                stream: full.finish(),
                objects,
            }) {
                return Ok(());
            }
        }
        encoder
            .push(kind, id, &frame)
            .map_err(|source| stream_error(id, source))?;
    }
    if encoder.frame_count() > 0 {
        let objects = encoder.frame_count();
        deliver(Batch {
            stream: encoder.finish(),
            objects,
        });
    }
    Ok(())
}

/// What [`super::push_once`] sent.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub committed: Committed,
    pub objects: u32,
    pub bytes: u64,
}
