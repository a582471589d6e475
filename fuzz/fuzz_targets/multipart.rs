//! A `multipart/byteranges` answer (a server's or a LAN cache's), fed in pieces of a
//! size the input picks: every write lands inside the artifact, nothing panics.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let size = 4096;
    let mut parser = ferry_agent::install::ranges::Multipart::new("b", size);
    for piece in body.chunks(usize::from(split).max(1)) {
        let fed = parser.feed(piece, &mut |offset, bytes: &[u8]| {
            assert!(offset + bytes.len() as u64 <= size, "a write past the artifact");
            Ok::<(), ()>(())
        });
        if fed.is_err() {
            return;
        }
    }
    assert!(parser.parts.iter().all(|p| p.start <= p.end && p.end <= size));
});
