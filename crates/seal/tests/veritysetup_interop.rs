//! Interoperability with the real `veritysetup` (cryptsetup): it accepts
//! our trees, both in a separate file and appended after the data with
//! `--hash-offset`, and we accept its trees, byte for byte the same.
//!
//! These tests fail, never skip, when `veritysetup` is missing: install the
//! Debian package `cryptsetup-bin`.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{BLOCK, mixed_data};
use ferry_seal::{Salt, SealError, build_tree, tree_size, verify};
use ferry_types::RootHash;

/// Block counts covering no levels, one, two and three levels.
const BLOCK_COUNTS: [usize; 5] = [1, 100, 129, 5000, 128 * 128 + 3];

fn veritysetup() -> PathBuf {
    let candidates = [
        "/usr/sbin/veritysetup",
        "/sbin/veritysetup",
        "/usr/bin/veritysetup",
    ];
    if let Some(path) = candidates
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
    {
        return path;
    }
    match Command::new("veritysetup").arg("--version").output() {
        Ok(output) if output.status.success() => PathBuf::from("veritysetup"),
        _ => panic!(
            "veritysetup is not installed, so interoperability cannot be checked: \
             install the Debian package cryptsetup-bin"
        ),
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(veritysetup())
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("could not run veritysetup {args:?}: {error}"))
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

fn write_image(dir: &Path, n_blocks: usize, seed: u64) -> (PathBuf, u64) {
    let path = dir.join("image");
    std::fs::write(&path, mixed_data(n_blocks * BLOCK, seed)).expect("write image");
    (path, (n_blocks * BLOCK) as u64)
}

fn open_rw(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("open")
}

#[test]
fn veritysetup_verifies_our_separate_tree() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (seed, &n_blocks) in BLOCK_COUNTS.iter().enumerate() {
        let (image_path, data_size) = write_image(dir.path(), n_blocks, seed as u64);
        let tree_path = dir.path().join("tree");
        let _ = std::fs::remove_file(&tree_path);
        let (root, _) = build_tree(
            &open_rw(&image_path),
            data_size,
            Salt::random(),
            &open_rw(&tree_path),
            0,
        )
        .expect("build");
        let root_text = root.to_string();
        let args = [
            "verify",
            path_str(&image_path),
            path_str(&tree_path),
            &root_text,
        ];
        let output = run(&args);
        assert!(
            output.status.success(),
            "veritysetup refused our tree for {n_blocks} blocks: {}",
            String::from_utf8_lossy(&output.stderr)
        );

        // And it is not a rubber stamp: a changed data block is refused.
        let image = open_rw(&image_path);
        image
            .write_all_at(b"tampered", data_size / 2)
            .expect("tamper");
        let output = run(&args);
        assert!(
            !output.status.success(),
            "veritysetup accepted a tampered image"
        );
    }
}

#[test]
fn veritysetup_verifies_our_tree_appended_with_hash_offset() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (seed, &n_blocks) in BLOCK_COUNTS.iter().enumerate() {
        let (image_path, data_size) = write_image(dir.path(), n_blocks, 100 + seed as u64);
        let image = open_rw(&image_path);
        let (root, _) =
            build_tree(&image, data_size, Salt::random(), &image, data_size).expect("build");
        assert_eq!(
            image.metadata().expect("metadata").len(),
            data_size + tree_size(data_size)
        );
        let image_text = path_str(&image_path);
        let offset_arg = format!("--hash-offset={data_size}");
        let root_text = root.to_string();
        let output = run(&["verify", &offset_arg, image_text, image_text, &root_text]);
        assert!(
            output.status.success(),
            "veritysetup refused our appended tree for {n_blocks} blocks: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Runs `veritysetup format` and returns the root hash it prints.
fn veritysetup_format(
    extra_args: &[&str],
    image: &Path,
    tree: &Path,
    salt: &Salt,
    uuid: &str,
) -> RootHash {
    let salt_text = salt.to_string();
    let mut args = vec!["format", "--salt", &salt_text, "--uuid", uuid];
    args.extend_from_slice(extra_args);
    args.extend([path_str(image), path_str(tree)]);
    let output = run(&args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "veritysetup format failed: {}{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find(|line| line.starts_with("Root hash:"))
        .unwrap_or_else(|| panic!("no root hash in veritysetup output: {stdout}"));
    let text = line.trim_start_matches("Root hash:").trim();
    text.parse()
        .unwrap_or_else(|error| panic!("bad root hash {text:?}: {error}"))
}

#[test]
fn we_verify_veritysetup_trees_and_build_the_same_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let uuid = "6d4c1f3e-8a5b-4b7e-9c2d-1e0f3a4b5c6d";
    for (seed, &n_blocks) in BLOCK_COUNTS.iter().enumerate() {
        let (image_path, data_size) = write_image(dir.path(), n_blocks, 200 + seed as u64);
        let their_tree = dir.path().join("their-tree");
        let _ = std::fs::remove_file(&their_tree);
        let salt = Salt::random();
        let their_root = veritysetup_format(&[], &image_path, &their_tree, &salt, uuid);

        let image = open_rw(&image_path);
        verify(&image, data_size, &open_rw(&their_tree), 0, &their_root).unwrap_or_else(|error| {
            panic!("we refused veritysetup's tree for {n_blocks} blocks: {error}")
        });

        let our_tree = dir.path().join("our-tree");
        let _ = std::fs::remove_file(&our_tree);
        let our_tree_file = open_rw(&our_tree);
        let (our_root, mut superblock) =
            build_tree(&image, data_size, salt, &our_tree_file, 0).expect("build");
        assert_eq!(
            our_root, their_root,
            "root hashes differ for {n_blocks} blocks"
        );
        superblock.uuid = uuid.parse().expect("uuid");
        superblock
            .write_to(&our_tree_file, 0)
            .expect("rewrite superblock");
        let theirs = std::fs::read(&their_tree).expect("read their tree");
        let ours = std::fs::read(&our_tree).expect("read our tree");
        assert!(
            theirs == ours,
            "tree bytes differ for {n_blocks} blocks ({} vs {} bytes)",
            theirs.len(),
            ours.len()
        );

        // Our verify still finds a changed block in their layout.
        let mut last_byte = [0u8];
        image
            .read_exact_at(&mut last_byte, data_size - 1)
            .expect("read");
        image
            .write_all_at(&[last_byte[0] ^ 0xff], data_size - 1)
            .expect("tamper");
        let error =
            verify(&image, data_size, &open_rw(&their_tree), 0, &their_root).expect_err("tampered");
        assert!(
            matches!(error, SealError::Mismatch { first_bad_block, .. } if first_bad_block == n_blocks as u64 - 1),
            "{error:?}"
        );
    }
}

#[test]
fn we_verify_a_veritysetup_tree_at_a_hash_offset() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (image_path, data_size) = write_image(dir.path(), 3000, 300);
    let salt = Salt::random();
    let offset_arg = format!("--hash-offset={data_size}");
    let root = veritysetup_format(
        &[&offset_arg, "--data-blocks=3000"],
        &image_path,
        &image_path,
        &salt,
        "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0",
    );
    let image = open_rw(&image_path);
    verify(&image, data_size, &image, data_size, &root)
        .expect("verify veritysetup's appended tree");
}
