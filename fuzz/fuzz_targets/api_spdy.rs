//! The SPDY/3.1 frame decoder (what kubectl port-forward sends) on arbitrary bytes, fed in
//! pieces of a size the input picks: no panic, a buffer that never holds more than one
//! control frame and a piece, and every control frame it yields encodes and decodes back to
//! itself through a fresh encoder and decoder (so header compression round-trips too).
#![no_main]

use bytes::BytesMut;
use corral_api::spdy::{Decoder, Encoder, Frame, FrameError, MAX_CONTROL_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let step = step as usize + 1;
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    'feed: for piece in data.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(FrameError::Session(_)) => break 'feed,
                Err(FrameError::Stream { .. }) => {}
            }
        }
        assert!(
            buf.len() <= 8 + MAX_CONTROL_LEN + step,
            "{} bytes held",
            buf.len()
        );
    }
    let mut encoder = Encoder::new();
    let mut again = Decoder::new();
    for f in frames.iter().filter(|f| !matches!(f, Frame::Data { .. })) {
        let mut wire = BytesMut::new();
        encoder
            .encode(f, &mut wire)
            .expect("a decoded frame encodes");
        if wire.len() > 8 + MAX_CONTROL_LEN {
            // Headers that inflated within the limit may compress past it here: the decoder
            // would refuse the frame, and the two zlib streams part ways.
            break;
        }
        let back = again.decode(&mut wire).expect("an encoded frame decodes");
        assert_eq!(back.as_ref(), Some(f));
        assert!(wire.is_empty());
    }
});
