//! Feeds arbitrary bytes, split at an arbitrary point, to the server-side request decoder.
//! Properties: no panic; requests decoded from the whole input are decoded the same way when the
//! bytes arrive in two reads through one resumable decoder; a partial input consumes nothing.
#![no_main]

use bytes::BytesMut;
use common::resp::{parse_request, RequestDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let cut = data[0] as usize % data.len();
    let input = &data[1..];
    let cut = cut.min(input.len());

    let mut whole = BytesMut::from(input);
    let mut from_whole = Vec::new();
    while let Ok(Some(args)) = parse_request(&mut whole) {
        from_whole.push(args);
    }

    let mut decoder = RequestDecoder::default();
    let mut split = BytesMut::from(&input[..cut]);
    let mut from_split = Vec::new();
    loop {
        let before = split.len();
        match decoder.decode(&mut split) {
            Ok(Some(args)) => from_split.push(args),
            Ok(None) => {
                assert_eq!(split.len(), before, "an incomplete request consumed bytes");
                break;
            }
            Err(_) => break,
        }
    }
    split.extend_from_slice(&input[cut..]);
    while let Ok(Some(args)) = decoder.decode(&mut split) {
        from_split.push(args);
    }
    // Errors may surface at a different point, but everything parsed before must agree.
    let n = from_whole.len().min(from_split.len());
    assert_eq!(from_whole[..n], from_split[..n]);
});
