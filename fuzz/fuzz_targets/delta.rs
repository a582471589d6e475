//! A tailored delta applied to a fixed 64 KiB reference, without a pin (so the parser,
//! not only the digest check, sees the input). Writes are bounded: a delta that asks to
//! write far beyond its reference is refused by the sink as a disk would be full.
#![no_main]
use std::io;

use ferry_delta::{ApplyOptions, Reference, SlotSink, apply_delta};

struct Image(Vec<u8>);

impl Reference for Image {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start.checked_add(buf.len()).ok_or(io::ErrorKind::UnexpectedEof)?;
        let bytes = self.0.get(start..end).ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }

    fn binding_size(&self) -> io::Result<Option<u64>> {
        Ok(Some(self.0.len() as u64))
    }
}

/// A slot of at most 16 MiB.
struct Slot(Vec<u8>);

impl SlotSink for Slot {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&end| end <= 16 << 20)
            .ok_or(io::ErrorKind::StorageFull)? as usize;
        if self.0.len() < end {
            self.0.resize(end, 0);
        }
        self.0[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let reference = Image((0..64u32 << 10).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect());
    let options = ApplyOptions {
        expected_manifest_digest: None,
        max_segment_bytes: 1 << 20,
        max_reference_bytes: 1 << 20,
        max_window_bytes: 1 << 20,
        ..ApplyOptions::default()
    };
    let mut slot = Slot(Vec::new());
    let _ = apply_delta(&reference, data, &mut slot, &options);
});
