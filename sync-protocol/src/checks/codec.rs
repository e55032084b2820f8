//! Invariants of the codecs: object encoding, object streams and bounded zstd.
//!
//! Each function accepts any bytes. Invalid input is expected and ignored; a panic means an
//! invariant broke: a decoder accepted something it cannot reproduce byte for byte, gave
//! different answers for the same bytes, or let a limit slip.

use crate::compress::{CompressError, compress_object, decompress_object, verify_frame};
use crate::id::ObjectId;
use crate::object::Object;
use crate::stream::{Item, StreamDecoder, StreamEncoder, StreamError, StreamLimits, StreamSummary};

/// `Object::decode` accepts only canonical encodings: whatever it accepts encodes back to the
/// same bytes, with the same length and id, and decodes again to the same value.
pub fn object_decode(data: &[u8]) {
    let Ok(object) = Object::decode(data) else {
        return;
    };
    let encoded = object.encode();
    assert_eq!(encoded, data, "accepted a non-canonical encoding");
    assert_eq!(object.encoded_len(), data.len());
    assert_eq!(
        object.id(),
        ObjectId::of_encoded(data),
        "id is not the hash of the bytes"
    );
    assert_eq!(Object::decode(&encoded).as_ref(), Ok(&object));
}

/// The outcome of feeding a stream decoder: the frames and records it handed out, then how it
/// ended.
type StreamOutcome = (Vec<Item>, Result<StreamSummary, StreamError>);

/// Feeds `data` cut at `cuts` (sorted offsets), draining frames after every piece.
fn decode_split(data: &[u8], cuts: &[usize]) -> StreamOutcome {
    let mut decoder = StreamDecoder::with_limits(StreamLimits::DEFAULT);
    let mut frames = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain([&data.len()]) {
        let end = end.clamp(start, data.len());
        decoder.feed(&data[start..end]);
        start = end;
        loop {
            match decoder.next_item() {
                Ok(Some(item)) => frames.push(item),
                Ok(None) => break,
                Err(error) => return (frames, Err(error)),
            }
        }
    }
    (frames, decoder.finish())
}

/// The stream decoder's answer does not depend on how its input is cut: the same frames, then
/// the same summary or the same error (kind, frame index and offset). An accepted stream is
/// the one encoding of its frames: re-encoding them gives back the input.
pub fn stream_decode(data: &[u8]) {
    let whole = decode_split(data, &[]);
    let mut splits: Vec<Vec<usize>> = vec![
        // Every byte on its own.
        (1..data.len()).collect(),
        // Halves.
        vec![data.len() / 2],
    ];
    // Cut points taken from the data itself, so the fuzzer can steer them.
    if data.len() > 1 {
        let mut derived: Vec<usize> = data
            .iter()
            .step_by(7)
            .enumerate()
            .map(|(index, &byte)| (index * 31 + usize::from(byte) * 17) % data.len())
            .collect();
        derived.sort_unstable();
        splits.push(derived);
    }
    for cuts in &splits {
        let split = decode_split(data, cuts);
        assert_eq!(
            split.0, whole.0,
            "frames differ when the input is cut at {cuts:?}"
        );
        assert_eq!(
            split.1, whole.1,
            "outcome differs when the input is cut at {cuts:?}"
        );
    }
    let (frames, outcome) = whole;
    let Ok(summary) = outcome else {
        return;
    };
    assert_eq!(summary.frames as usize, frames.len());
    assert_eq!(summary.len, data.len() as u64);
    let mut encoder = StreamEncoder::new();
    for item in &frames {
        let frame = match item {
            Item::Object(frame) => frame,
            Item::Record(record) => {
                encoder
                    .push_record(&record.record)
                    .expect("a decoded record is one the encoder accepts");
                continue;
            }
        };
        assert_eq!(
            frame.object.id(),
            frame.id,
            "frame {} has a wrong id",
            frame.index
        );
        assert_eq!(frame.object.kind(), frame.kind);
        encoder
            .push(frame.kind, &frame.id, &frame.compressed)
            .expect("a decoded frame fits the encoder's limits");
    }
    assert_eq!(
        encoder.finish(),
        data,
        "an accepted stream is not the encoding of its frames"
    );
}

/// The output cap used by [`zstd_decode`]: small, so that most fuzz inputs hit it.
pub const ZSTD_CHECK_LIMIT: usize = 64 * 1024;

/// `decompress_object` never returns more than its limit, whatever the frame claims; the limit
/// is exact (the output's own length is enough, one less is too little); what it returns
/// round-trips through compression; and `verify_frame` agrees with `Object::decode`.
pub fn zstd_decode(data: &[u8]) {
    let output = match decompress_object(data, ZSTD_CHECK_LIMIT) {
        Ok(output) => output,
        Err(CompressError::TooLarge { limit }) => {
            assert_eq!(limit, ZSTD_CHECK_LIMIT);
            return;
        }
        Err(_) => return,
    };
    assert!(output.len() <= ZSTD_CHECK_LIMIT, "output passed the limit");
    assert_eq!(decompress_object(data, output.len()).as_ref(), Ok(&output));
    if let Some(less) = output.len().checked_sub(1) {
        assert_eq!(
            decompress_object(data, less),
            Err(CompressError::TooLarge { limit: less })
        );
    }
    let again = compress_object(&output);
    assert_eq!(
        decompress_object(&again, output.len()).as_ref(),
        Ok(&output)
    );
    let id = ObjectId::of_encoded(&output);
    match (verify_frame(&id, data), Object::decode(&output)) {
        (Ok((object, encoded)), Ok(decoded)) => {
            assert_eq!(object, decoded);
            assert_eq!(encoded, output);
        }
        (Err(CompressError::Invalid { error, .. }), Err(decode_error)) => {
            assert_eq!(error, decode_error);
        }
        (verified, decoded) => {
            panic!("verify_frame and Object::decode disagree: {verified:?} vs {decoded:?}")
        }
    }
}
