//! AMF0 decoding of arbitrary bytes (commands and metadata come from clients). Must never
//! panic or recurse without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::protocol::amf0;

fuzz_target!(|data: &[u8]| {
    let _ = amf0::decode_all(data);
});
