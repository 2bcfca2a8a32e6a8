//! The WebSocket frame decoder, fed the way the connection reader feeds it: in reads of arbitrary size, the
//! undecoded rest kept and grown, each complete message dropped from the front.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sockudo::ws::{Decoder, Message};

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, input)) = data.split_first() else {
        return;
    };
    // Read sizes 1..=64 and a small or normal message limit, chosen by the first byte.
    let chunk = usize::from(knobs & 0x3f) + 1;
    let max = if knobs & 0x40 != 0 { 64 } else { 64 * 1024 };
    let mut decoder = Decoder::new(max);
    let mut pending: Vec<u8> = Vec::new();
    for piece in input.chunks(chunk) {
        pending.extend_from_slice(piece);
        loop {
            match decoder.decode(&pending) {
                Ok(Some((msg, used))) => {
                    assert!(
                        used > 0 && used <= pending.len(),
                        "used {used} of {}",
                        pending.len()
                    );
                    match msg {
                        Message::Text(t) => assert!(std::str::from_utf8(&t).is_ok()),
                        Message::Binary(b) => assert!(b.len() <= max),
                        Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= 125),
                        Message::Close(_) => {}
                    }
                    pending.drain(..used);
                }
                Ok(None) => break,
                // Fatal for the stream: the reader stops decoding.
                Err(e) => {
                    let _ = e.close_code();
                    return;
                }
            }
        }
    }
});
