//! The client-side reply parser (used by the proxy and the operator's admin client) must never
//! panic or recurse without bound on hostile bytes, and must re-encode what it parsed losslessly.
#![no_main]

use bytes::BytesMut;
use common::resp::parse_frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = parse_frame(&mut buf) {
        let mut encoded = BytesMut::new();
        frame.encode(&mut encoded);
        let again = parse_frame(&mut encoded).expect("re-encoded frame parses").expect("complete");
        assert_eq!(again, frame);
    }
});
