//! The model's promises, without FUSE: what is durable after which sync.

use super::*;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// The durable state as `path → content` (directories as `/`, links as `-> target`).
fn durable(tree: &Tree) -> BTreeMap<String, String> {
    tree.durable_state()
        .into_iter()
        .map(|(path, entry)| {
            let content = match entry {
                Durable::Dir(_) => "/".to_owned(),
                Durable::File(bytes, _) => String::from_utf8_lossy(&bytes).into_owned(),
                Durable::Symlink(target) => format!("-> {}", target.display()),
            };
            (path.display().to_string(), content)
        })
        .collect()
}

fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn a_write_without_fsync_is_lost_and_an_fsynced_one_kept() {
    let mut tree = Tree::new(0o755);
    let f = tree.create_file(ROOT, os("f"), 0o644).unwrap();
    tree.write(f, 0, b"one").unwrap();
    tree.fsync(ROOT).unwrap();
    // Named durably, content never synced: empty after the cut.
    assert_eq!(durable(&tree), map(&[("f", "")]));
    tree.fsync(f).unwrap();
    tree.write(f, 3, b" two").unwrap();
    assert_eq!(tree.read(f, 0, 100).unwrap(), b"one two");
    assert_eq!(durable(&tree), map(&[("f", "one")]));
    tree.fsync(f).unwrap();
    assert_eq!(durable(&tree), map(&[("f", "one two")]));
}

#[test]
fn a_created_file_is_named_only_once_its_directory_is_synced() {
    let mut tree = Tree::new(0o755);
    let f = tree.create_file(ROOT, os("f"), 0o644).unwrap();
    tree.write(f, 0, b"data").unwrap();
    tree.fsync(f).unwrap();
    assert!(
        durable(&tree).is_empty(),
        "a synced file without a synced name is lost"
    );
    tree.fsync(ROOT).unwrap();
    assert_eq!(durable(&tree), map(&[("f", "data")]));
}

#[test]
fn a_rename_without_a_directory_fsync_is_undone_at_the_cut() {
    let mut tree = Tree::new(0o755);
    let old = tree.create_file(ROOT, os("target"), 0o644).unwrap();
    tree.write(old, 0, b"old").unwrap();
    tree.fsync(old).unwrap();
    tree.fsync(ROOT).unwrap();
    let temp = tree.create_file(ROOT, os(".target.tmp"), 0o644).unwrap();
    tree.write(temp, 0, b"new").unwrap();
    tree.fsync(temp).unwrap();
    tree.rename(ROOT, os(".target.tmp"), ROOT, os("target"), false)
        .unwrap();
    assert_eq!(tree.list(ROOT).unwrap().len(), 1);
    assert_eq!(durable(&tree), map(&[("target", "old")]));
    tree.fsync(ROOT).unwrap();
    assert_eq!(durable(&tree), map(&[("target", "new")]));
}

#[test]
fn an_unlink_is_durable_with_the_directory_and_a_new_directory_with_its_parent() {
    let mut tree = Tree::new(0o755);
    let d = tree.mkdir(ROOT, os("d"), 0o755).unwrap();
    let f = tree.create_file(d, os("f"), 0o600).unwrap();
    tree.write(f, 0, b"x").unwrap();
    tree.fsync(f).unwrap();
    tree.fsync(d).unwrap();
    assert!(
        durable(&tree).is_empty(),
        "d itself is not named durably yet"
    );
    tree.fsync(ROOT).unwrap();
    assert_eq!(durable(&tree), map(&[("d", "/"), ("d/f", "x")]));
    tree.unlink(d, os("f")).unwrap();
    assert_eq!(durable(&tree), map(&[("d", "/"), ("d/f", "x")]));
    tree.fsync(d).unwrap();
    assert_eq!(durable(&tree), map(&[("d", "/")]));
}

#[test]
fn truncate_and_mode_are_durable_with_the_file() {
    let mut tree = Tree::new(0o755);
    let f = tree.create_file(ROOT, os("f"), 0o644).unwrap();
    tree.write(f, 0, b"abcdef").unwrap();
    tree.fsync(f).unwrap();
    tree.fsync(ROOT).unwrap();
    tree.set_size(f, 2).unwrap();
    tree.set_mode(f, 0o600).unwrap();
    assert_eq!(durable(&tree), map(&[("f", "abcdef")]));
    tree.fsync(f).unwrap();
    assert_eq!(durable(&tree), map(&[("f", "ab")]));
    let modes: Vec<u32> = tree
        .durable_state()
        .into_iter()
        .filter_map(|(_, e)| match e {
            Durable::File(_, mode) => Some(mode),
            _ => None,
        })
        .collect();
    assert_eq!(modes, [0o600]);
}

#[test]
fn rename_follows_posix_rules() {
    let mut tree = Tree::new(0o755);
    let d = tree.mkdir(ROOT, os("d"), 0o755).unwrap();
    let e = tree.mkdir(d, os("e"), 0o755).unwrap();
    tree.create_file(e, os("x"), 0o644).unwrap();
    tree.create_file(ROOT, os("f"), 0o644).unwrap();
    assert_eq!(
        tree.rename(ROOT, os("d"), e, os("d"), false),
        Err(libc::EINVAL)
    );
    assert_eq!(
        tree.rename(ROOT, os("f"), d, os("e"), false),
        Err(libc::EISDIR)
    );
    assert_eq!(
        tree.rename(d, os("e"), ROOT, os("f"), false),
        Err(libc::ENOTDIR)
    );
    assert_eq!(tree.rmdir(d, os("e")), Err(libc::ENOTEMPTY));
    tree.create_file(ROOT, os("g"), 0o644).unwrap();
    assert_eq!(
        tree.rename(ROOT, os("f"), ROOT, os("g"), true),
        Err(libc::EEXIST)
    );
    tree.rename(ROOT, os("f"), ROOT, os("g"), false).unwrap();
    assert_eq!(tree.lookup(ROOT, os("f")), Err(libc::ENOENT));
}

#[test]
fn a_file_loaded_from_disk_is_durable_and_copied_only_when_written() {
    let mut tree = Tree::new(0o755);
    let bytes = Arc::new(b"disk".to_vec());
    let f = tree
        .insert_durable(ROOT, os("f"), &Durable::File(Arc::clone(&bytes), 0o644))
        .unwrap();
    assert_eq!(durable(&tree), map(&[("f", "disk")]));
    tree.allocate(f, 0, 8).unwrap();
    assert_eq!(tree.size(f).unwrap(), 8);
    assert_eq!(
        &*bytes, b"disk",
        "the loaded bytes are never changed in place"
    );
    assert_eq!(durable(&tree), map(&[("f", "disk")]));
}
