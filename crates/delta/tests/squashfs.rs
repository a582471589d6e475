//! Deltas below squashfs's zstd compression, on real `mksquashfs` images: the expanded
//! delta rebuilds the new image byte for byte and is much smaller than a byte-level one.

use std::path::Path;
use std::process::Command;

use ferry_delta::{ApplyOptions, EncodeOptions, apply_any, encode_delta_bytes, encode_expanded};
use ferry_types::Diagnose;

/// Text-like file content: compressible, different per seed.
fn text(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "update ", "slot ", "seal ", "kernel ", "verity ", "boot\n", "device ", "ferry ",
        "journal ", "delta ", "frame ", "catalog ",
    ];
    let mut s = seed | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        out.extend_from_slice(WORDS[(s % 12) as usize].as_bytes());
    }
    out.truncate(len);
    out
}

fn mksquashfs(tree: &Path, image: &Path) {
    let out = Command::new("mksquashfs")
        .arg(tree)
        .arg(image)
        .args([
            "-noappend",
            "-comp",
            "zstd",
            "-mkfs-time",
            "0",
            "-all-root",
            "-no-xattrs",
        ])
        .args(["-all-time", "0", "-quiet", "-no-progress"])
        .output()
        .expect("mksquashfs runs (Debian: squashfs-tools)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_squashfs_delta_below_the_compression_is_exact_and_smaller() {
    let dir = tempfile::tempdir().unwrap();
    let (t1, t2) = (dir.path().join("v1"), dir.path().join("v2"));
    std::fs::create_dir_all(&t1).unwrap();
    std::fs::create_dir_all(&t2).unwrap();
    for i in 0..40u64 {
        let content = text(i, 60_000 + (i as usize * 7919) % 200_000);
        std::fs::write(t1.join(format!("f{i}")), &content).unwrap();
        let mut changed = content.clone();
        if i % 4 == 0 {
            // A small edit inside the file: its compressed blocks all change.
            let at = changed.len() / 3;
            changed[at..at + 20].copy_from_slice(b"-- patched in v2 ---");
        }
        std::fs::write(t2.join(format!("f{i}")), &changed).unwrap();
    }
    std::fs::write(t2.join("new-file"), text(99, 50_000)).unwrap();
    let (v1, v2) = (dir.path().join("v1.sqfs"), dir.path().join("v2.sqfs"));
    mksquashfs(&t1, &v1);
    mksquashfs(&t2, &v2);
    let (old, new) = (std::fs::read(&v1).unwrap(), std::fs::read(&v2).unwrap());

    let opts = EncodeOptions::default();
    let mut expanded = Vec::new();
    let (_, was_expanded) = encode_expanded(&old, &new, &mut expanded, &opts).unwrap();
    assert!(was_expanded, "the zstd blocks re-compress bit-exactly");
    let mut plain = Vec::new();
    encode_delta_bytes(&old, &new, &mut plain, &opts).unwrap();

    let reference = std::fs::File::open(&v1).unwrap();
    let mut rebuilt = Vec::new();
    apply_any(
        &reference,
        &expanded[..],
        &mut rebuilt,
        &ApplyOptions::default(),
    )
    .unwrap();
    assert!(rebuilt == new, "the rebuilt image is the new image");
    assert!(
        expanded.len() * 2 < plain.len(),
        "expanded {} B against byte-level {} B",
        expanded.len(),
        plain.len()
    );

    // The delta applied to another base: BASE_MISMATCH, nothing but an error.
    let other = std::fs::File::open(&v2).unwrap();
    let err = apply_any(
        &other,
        &expanded[..],
        &mut Vec::new(),
        &ApplyOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "BASE_MISMATCH", "{err}");
}
