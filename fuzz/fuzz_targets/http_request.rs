//! A player's request head as the HTTP-FLV session reads it: the cheap end-of-head scan, then
//! the parse, then the stream path. Must never panic; a head `check` accepts is within the
//! size limit, and its length never exceeds the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::protocol::http_server::{self, MAX_REQUEST_HEAD, RequestHead, StreamTarget};

fuzz_target!(|data: &[u8]| {
    let Ok(len) = http_server::check(data, MAX_REQUEST_HEAD) else { return };
    assert!(len <= data.len() && len <= MAX_REQUEST_HEAD);
    if let Ok(head) = RequestHead::parse(&data[..len]) {
        let _ = StreamTarget::parse(&head.path, &head.query);
    }
});
