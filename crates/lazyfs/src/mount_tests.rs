//! The file system mounted for real: what survives a cut through the kernel's FUSE path
//! (open, write, fsync of files and directories, rename, unlink). Needs root and FUSE:
//! skipped, saying so, when the machine has none and `CI` is not set; CI must have it.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::Path;

use super::*;

/// A mounted file system over a fresh backing directory, or `None` (skipped loudly).
fn mounted(cut_after: Option<u64>) -> Option<(tempfile::TempDir, LazyFs)> {
    if let Err(why) = available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to mount FUSE: {why}"
        );
        eprintln!("SKIPPED: the lazy file system cannot be mounted here: {why}");
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("backing")).unwrap();
    fs::create_dir(tmp.path().join("mnt")).unwrap();
    fs::write(tmp.path().join("backing/old"), b"old\n").unwrap();
    let lazy = LazyFs::mount(
        &tmp.path().join("backing"),
        &tmp.path().join("mnt"),
        cut_after,
    )
    .unwrap();
    Some((tmp, lazy))
}

fn sync_dir(dir: &Path) {
    File::open(dir).unwrap().sync_all().unwrap();
}

/// Replaces `dir/name` with `content` as a crash-safe write does: a synced temp file,
/// renamed over it, the directory synced.
fn replace_durably(dir: &Path, name: &str, content: &[u8]) {
    let temp = dir.join(format!(".{name}.tmp"));
    let mut new = File::create(&temp).unwrap();
    new.write_all(content).unwrap();
    new.sync_all().unwrap();
    drop(new);
    fs::rename(&temp, dir.join(name)).unwrap();
    sync_dir(dir);
}

fn read(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

#[test]
fn only_what_was_synced_survives_the_cut() {
    let Some((tmp, lazy)) = mounted(None) else {
        return;
    };
    let mnt = tmp.path().join("mnt");
    assert_eq!(read(&mnt.join("old")).as_deref(), Some("old\n"));

    // Written, never synced: its name is made durable by the directory sync below, its
    // bytes never were: empty after the cut (as on a file system that allocates late).
    fs::write(mnt.join("lost"), b"lost\n").unwrap();
    // Written and fsynced, directory synced: kept.
    let mut kept = File::create(mnt.join("kept")).unwrap();
    kept.write_all(b"kept\n").unwrap();
    kept.sync_all().unwrap();
    sync_dir(&mnt);
    // Appended after the sync: the append is lost, the synced bytes stay.
    kept.write_all(b"more\n").unwrap();
    drop(kept);
    // A directory made and synced with its parent: kept; an unlink in it unsynced: undone.
    fs::create_dir(mnt.join("d")).unwrap();
    let mut inner = File::create(mnt.join("d/f")).unwrap();
    inner.write_all(b"f\n").unwrap();
    inner.sync_all().unwrap();
    sync_dir(&mnt.join("d"));
    sync_dir(&mnt);
    fs::remove_file(mnt.join("d/f")).unwrap();
    // Renamed over `old` with the file synced but not the directory: `old` keeps its bytes.
    let mut new = File::create(mnt.join("new")).unwrap();
    new.write_all(b"new\n").unwrap();
    new.sync_all().unwrap();
    fs::rename(mnt.join("new"), mnt.join("old")).unwrap();
    assert_eq!(read(&mnt.join("old")).as_deref(), Some("new\n"));
    assert!(read(&mnt.join("d/f")).is_none());
    drop((new, inner));

    lazy.cut();
    assert!(
        fs::read(mnt.join("old")).is_err(),
        "after the cut every request fails"
    );
    lazy.unmount_after_cut().unwrap();

    let backing = tmp.path().join("backing");
    assert_eq!(read(&backing.join("lost")).as_deref(), Some(""));
    assert_eq!(read(&backing.join("kept")).as_deref(), Some("kept\n"));
    assert_eq!(read(&backing.join("old")).as_deref(), Some("old\n"));
    assert_eq!(
        read(&backing.join("new")),
        None,
        "new was never named durably"
    );
    assert_eq!(read(&backing.join("d/f")).as_deref(), Some("f\n"));

    // The next mount starts from the durable state.
    let lazy = LazyFs::mount(&backing, &mnt, None).unwrap();
    assert_eq!(read(&mnt.join("kept")).as_deref(), Some("kept\n"));
    assert_eq!(read(&mnt.join("new")), None);
    lazy.sync_and_unmount().unwrap();
}

#[test]
fn a_rename_synced_with_its_directory_survives_and_a_clean_unmount_keeps_all() {
    let Some((tmp, lazy)) = mounted(None) else {
        return;
    };
    let mnt = tmp.path().join("mnt");
    replace_durably(&mnt, "old", b"new\n");
    fs::write(mnt.join("unsynced"), b"u\n").unwrap();
    let durable: Vec<_> = lazy
        .durable_state()
        .into_iter()
        .map(|(p, _)| p.display().to_string())
        .collect();
    assert_eq!(durable, ["old"]);
    lazy.sync_and_unmount().unwrap();
    let backing = tmp.path().join("backing");
    assert_eq!(read(&backing.join("old")).as_deref(), Some("new\n"));
    assert_eq!(read(&backing.join("unsynced")).as_deref(), Some("u\n"));
}

#[test]
fn the_cut_point_fails_the_change_that_reaches_it_and_runs_the_hook() {
    let Some((tmp, lazy)) = mounted(Some(3)) else {
        return;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    lazy.on_cut(move || {
        let _ = tx.send(());
    });
    let mnt = tmp.path().join("mnt");
    // Open across the unmount: the mount is detached, not waited for.
    let held = File::open(mnt.join("old")).unwrap();
    // Change 1: create; 2: write; 3: fsync — the cut.
    let mut f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(mnt.join("f"))
        .unwrap();
    f.write_all(b"data").unwrap();
    let synced = f.sync_all();
    assert!(synced.is_err(), "the third change found the power off");
    rx.recv_timeout(std::time::Duration::from_secs(5))
        .expect("the hook ran");
    assert!(lazy.is_cut());
    assert_eq!(lazy.ops(), 3);
    drop(f);
    lazy.unmount_after_cut().unwrap();
    drop(held);
    assert_eq!(read(&tmp.path().join("backing/f")), None);
    assert_eq!(
        read(&tmp.path().join("backing/old")).as_deref(),
        Some("old\n")
    );
}

#[test]
fn with_directory_syncs_forgotten_a_synced_rename_is_lost() {
    let Some((tmp, lazy)) = mounted(None) else {
        return;
    };
    lazy.forget_dir_syncs();
    let mnt = tmp.path().join("mnt");
    replace_durably(&mnt, "old", b"new\n");
    lazy.unmount_after_cut().unwrap();
    let backing = tmp.path().join("backing");
    assert_eq!(read(&backing.join("old")).as_deref(), Some("old\n"));
}
