//! Round trips: every way of building a tree gives the bytes and root hash
//! of an independent model of the format, and `verify` accepts them.

mod common;

use std::os::unix::fs::FileExt;

use common::{BLOCK, file_with, mixed_data, model_tree, read_all};
use ferry_seal::{
    LeafHasher, Salt, SealError, Superblock, Tree, TreeLayout, build_tree, hash_leaves, tree_size,
    verify,
};
use ferry_types::{Diagnose, RootHash};
use uuid::Uuid;

/// Block counts at every edge of the level structure: no levels, one level
/// (full and partial), two levels, and three levels.
const BLOCK_COUNTS: [usize; 7] = [1, 2, 127, 128, 129, 128 * 128, 128 * 128 + 1];

#[test]
fn all_builders_match_the_model() {
    for (seed, &n_blocks) in BLOCK_COUNTS.iter().enumerate() {
        let data = mixed_data(n_blocks * BLOCK, seed as u64);
        let salt = Salt::random();
        let uuid = Uuid::new_v4();
        let (model_root, model_bytes) = model_tree(salt.as_bytes(), uuid.as_bytes(), &data);
        let data_size = data.len() as u64;
        assert_eq!(
            model_bytes.len() as u64,
            tree_size(data_size),
            "{n_blocks} blocks"
        );

        // build_tree, from a file, into a separate tree file.
        let image = file_with(&data);
        let tree_file = tempfile::tempfile().expect("temp file");
        let (root, superblock) = build_tree(&image, data_size, salt, &tree_file, 0).expect("build");
        assert_eq!(root.as_bytes(), &model_root, "{n_blocks} blocks");
        assert_eq!(superblock.data_blocks, n_blocks as u64);
        superblock_with_uuid(&tree_file, uuid);
        assert!(
            read_all(&tree_file) == model_bytes,
            "tree bytes differ for {n_blocks} blocks"
        );
        verify(&image, data_size, &tree_file, 0, &root).expect("verify own tree");

        // LeafHasher, fed in uneven chunks, then Tree::write_to.
        let mut hasher = LeafHasher::with_data_size(salt, data_size);
        for chunk in data.chunks(BLOCK * 3 + 1000) {
            hasher.update(chunk);
        }
        assert_eq!(hasher.data_size(), data_size);
        let tree = hasher.finish().expect("finish").with_uuid(uuid);
        assert_eq!(tree.root(), root);
        let written = tempfile::tempfile().expect("temp file");
        tree.write_to(&written, 0).expect("write tree");
        assert!(
            read_all(&written) == model_bytes,
            "Tree bytes differ for {n_blocks} blocks"
        );

        // hash_leaves on aligned chunks, then Tree::from_leaves.
        let leaves: Vec<[u8; 32]> = data
            .chunks(64 * BLOCK)
            .flat_map(|chunk| hash_leaves(&salt, chunk))
            .collect();
        let tree = Tree::from_leaves(salt, n_blocks as u64, leaves).expect("from leaves");
        assert_eq!(tree.root(), root);
        assert_eq!(tree.layout(), &TreeLayout::new(data_size).expect("layout"));
    }
}

#[test]
fn tree_appended_to_the_image_round_trips() {
    let data = mixed_data(300 * BLOCK, 7);
    let data_size = data.len() as u64;
    let image = file_with(&data);
    let salt = Salt::random();
    let (root, _) = build_tree(&image, data_size, salt, &image, data_size).expect("build");
    assert_eq!(
        image.metadata().expect("metadata").len(),
        data_size + tree_size(data_size)
    );
    verify(&image, data_size, &image, data_size, &root).expect("verify");
    let mut on_disk = vec![0u8; data.len()];
    image.read_exact_at(&mut on_disk, 0).expect("read back");
    assert!(on_disk == data, "building the tree changed the image");
}

#[test]
fn a_partial_last_block_is_hashed_zero_padded() {
    let mut data = mixed_data(5 * BLOCK + 123, 3);
    let mut hasher = LeafHasher::new(Salt::from_bytes([9; 32]));
    hasher.update(&data);
    let from_stream = hasher.finish().expect("finish").root();
    data.resize(6 * BLOCK, 0);
    let padded = file_with(&data);
    let tree_file = tempfile::tempfile().expect("temp file");
    let (from_file, _) = build_tree(
        &padded,
        data.len() as u64,
        Salt::from_bytes([9; 32]),
        &tree_file,
        0,
    )
    .expect("build");
    assert_eq!(from_stream, from_file);
    assert_eq!(
        hash_leaves(
            &Salt::from_bytes([9; 32]),
            &data[5 * BLOCK..5 * BLOCK + 123]
        )
        .len(),
        1
    );
}

#[test]
fn bad_sizes_and_offsets_are_refused_with_their_codes() {
    let image = file_with(&mixed_data(4 * BLOCK, 1));
    let tree_file = tempfile::tempfile().expect("temp file");
    let salt = Salt::random();
    let code = |result: Result<(RootHash, Superblock), SealError>| {
        result.map(|_| ()).map_err(|e| e.code())
    };
    assert_eq!(
        code(build_tree(&image, 4 * 4096 - 1, salt, &tree_file, 0)),
        Err("SEAL_IMAGE_UNALIGNED")
    );
    assert_eq!(
        code(build_tree(&image, 0, salt, &tree_file, 0)),
        Err("SEAL_IMAGE_EMPTY")
    );
    assert_eq!(
        code(build_tree(&image, 4 * 4096, salt, &tree_file, 100)),
        Err("SEAL_HASH_OFFSET_UNALIGNED")
    );
    assert_eq!(
        code(build_tree(&image, 8 * 4096, salt, &tree_file, 0)),
        Err("SEAL_IMAGE_TRUNCATED")
    );
    assert_eq!(
        code(build_tree(&image, 4 * 4096, salt, &image, 2 * 4096)),
        Err("SEAL_TREE_OVERLAPS_IMAGE")
    );
    assert_eq!(
        Tree::from_leaves(salt, 3, vec![[0; 32]; 2])
            .map(|_| ())
            .map_err(|e| e.code()),
        Err("SEAL_LEAF_COUNT_MISMATCH")
    );

    let (root, _) = build_tree(&image, 4 * 4096, salt, &tree_file, 0).expect("build");
    tree_file.set_len(4096 + 100).expect("truncate tree");
    let error = verify(&image, 4 * 4096, &tree_file, 0, &root).expect_err("truncated tree");
    assert_eq!(error.code(), "SEAL_TREE_TRUNCATED", "{error}");
}

#[test]
fn hex_types_parse_display_and_serde_round_trip() {
    let salt = Salt::random();
    let text = salt.to_string();
    assert_eq!(text.len(), 64);
    assert_eq!(text.parse::<Salt>().expect("parse"), salt);
    assert_eq!(
        text.to_uppercase().parse::<Salt>().expect("parse upper"),
        salt
    );
    let json = serde_json::to_string(&salt).expect("serialize");
    assert_eq!(json, format!("\"{text}\""));
    assert_eq!(
        serde_json::from_str::<Salt>(&json).expect("deserialize"),
        salt
    );
    assert_ne!(Salt::random(), salt, "two random salts were equal");

    let root = RootHash::from_bytes([0xab; 32]);
    assert_eq!(root.to_string(), "ab".repeat(32));
    let json = serde_json::to_string(&root).expect("serialize");
    assert_eq!(
        serde_json::from_str::<RootHash>(&json).expect("deserialize"),
        root
    );
    // The root hash is ferry_types::RootHash (one spelling: lowercase hex); the salt
    // stays the seal's own and keeps SEAL_HEX_INVALID.
    for bad in ["", "ab", &"zz".repeat(32), &"ab".repeat(33)] {
        let error = bad.parse::<RootHash>().expect_err("bad hex");
        assert_eq!(error.code(), "DIGEST_INVALID");
        assert!(serde_json::from_str::<RootHash>(&format!("\"{bad}\"")).is_err());
        let error = bad.parse::<Salt>().expect_err("bad hex");
        assert_eq!(error.code(), "SEAL_HEX_INVALID");
    }
}

#[test]
fn superblock_round_trips_and_refuses_other_shapes() {
    let superblock = Superblock::new(Salt::random(), 262_144);
    let bytes = superblock.to_bytes();
    assert_eq!(Superblock::from_bytes(&bytes).expect("parse"), superblock);
    for (at, value) in [
        (0, b'X'),
        (8, 0),
        (12, 0),
        (32, b'm'),
        (65, 0),
        (69, 0),
        (80, 64),
        (84, 1),
        (200, 1),
        (511, 1),
    ] {
        let mut changed = bytes;
        changed[at] = value;
        let error = Superblock::from_bytes(&changed).expect_err("changed superblock");
        assert_eq!(
            error.code(),
            "SEAL_SUPERBLOCK_INVALID",
            "byte {at}: {error}"
        );
    }
}

fn superblock_with_uuid(tree_file: &std::fs::File, uuid: Uuid) {
    let mut superblock = Superblock::read_from(tree_file, 0).expect("read superblock");
    superblock.uuid = uuid;
    superblock.write_to(tree_file, 0).expect("write superblock");
}
