//! The guest agent's channel, as either side reads it: whatever the bytes (a hostile guest
//! writing to its port, or a hostile client of a VM's monitor), splitting them into frames and
//! parsing the payloads never panics, and every frame that parses re-encodes to the same bytes.
#![no_main]

use corral_guest::proto::{Exit, Frame, FrameReader, Request, Response};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Fed in two pieces at a data-chosen split, as a stream arrives.
    let split = data.first().map_or(0, |b| usize::from(*b) % (data.len().max(1)));
    let mut reader = FrameReader::new();
    reader.push(&data[..split]);
    let mut frames: Vec<Frame> = Vec::new();
    while let Ok(Some(f)) = reader.next_frame() {
        frames.push(f);
    }
    reader.push(&data[split..]);
    while let Ok(Some(f)) = reader.next_frame() {
        frames.push(f);
    }
    for f in frames {
        let _ = f.parse::<Request>();
        let _ = f.parse::<Response>();
        let _ = f.parse::<Exit>();
        let mut again = FrameReader::new();
        again.push(&f.encode());
        assert_eq!(again.next_frame().ok().flatten(), Some(f));
    }
});
