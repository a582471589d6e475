//! Helpers shared by the integration tests: synthetic images and recording sinks.
#![allow(dead_code)]

use std::fs::File;
use std::io::{self, Write};

use ferry_delta::SlotSink;

pub const BLOCK: usize = 4096;

/// A deterministic pseudo-random generator (xorshift), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// An image of `n_blocks` blocks mixing random, text-like and zero blocks.
pub fn image(seed: u64, n_blocks: usize) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let words: [&[u8]; 6] = [
        b"kernel ",
        b"module=",
        b"libc.so.6 ",
        b"ok\n",
        b"/usr/lib/",
        b"0x7f",
    ];
    let mut out = Vec::with_capacity(n_blocks * BLOCK);
    for _ in 0..n_blocks {
        match rng.below(4) {
            0 => out.extend(rng.bytes(BLOCK)),
            1 => out.extend(std::iter::repeat_n(0u8, BLOCK)),
            _ => {
                let start = out.len();
                while out.len() < start + BLOCK {
                    out.extend_from_slice(words[rng.below(words.len())]);
                    out.extend_from_slice(format!("{} ", rng.below(1000)).as_bytes());
                }
                out.truncate(start + BLOCK);
            }
        }
    }
    out
}

pub fn temp_file(bytes: &[u8]) -> File {
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(bytes).unwrap();
    file
}

/// A sink that checks every write against the image it should produce, and counts writes.
pub struct CheckingSink<'a> {
    pub expected: &'a [u8],
    pub writes: usize,
    pub bytes: u64,
    pub wrong_writes: usize,
    pub next_offset: u64,
}

impl<'a> CheckingSink<'a> {
    pub fn new(expected: &'a [u8]) -> Self {
        CheckingSink {
            expected,
            writes: 0,
            bytes: 0,
            wrong_writes: 0,
            next_offset: 0,
        }
    }
}

impl SlotSink for CheckingSink<'_> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        assert!(
            offset >= self.next_offset,
            "writes must arrive in increasing offset order"
        );
        self.next_offset = offset + data.len() as u64;
        let end = offset as usize + data.len();
        if end > self.expected.len() || &self.expected[offset as usize..end] != data {
            self.wrong_writes += 1;
        }
        self.writes += 1;
        self.bytes += data.len() as u64;
        Ok(())
    }
}
