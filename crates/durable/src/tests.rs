//! What callers rely on: whole-file replacement, permissions from creation on, no
//! temporary file left by a failure, and no two writers sharing a temporary name.

use super::*;
use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn replaces_the_content_and_leaves_only_the_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    write_atomic(&path, b"old content, longer than the new one").expect("first write");
    write_atomic(&path, b"new").expect("second write");
    assert_eq!(fs::read(&path).expect("read"), b"new");
    assert_eq!(names_in(dir.path()), vec!["state.json"]);
}

#[test]
fn a_reader_sees_the_old_or_the_new_content_never_a_mix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("boot-state.json");
    let old = vec![b'a'; 64 * 1024];
    let new = vec![b'b'; 3 * 1024];
    write_atomic(&path, &old).expect("seed");
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (path, old, new, done) = (path.clone(), old.clone(), new.clone(), done.clone());
        std::thread::spawn(move || {
            let mut n_reads = 0u64;
            while !done.load(Ordering::Relaxed) {
                let seen = fs::read(&path).expect("the target always exists");
                assert!(
                    seen == old || seen == new,
                    "a reader saw {} bytes that are neither version",
                    seen.len()
                );
                n_reads += 1;
            }
            n_reads
        })
    };
    for round in 0..200 {
        let bytes = if round % 2 == 0 { &new } else { &old };
        write_atomic(&path, bytes).expect("replace");
    }
    done.store(true, Ordering::Relaxed);
    let n_reads = reader.join().expect("reader");
    assert!(n_reads > 0);
    assert_eq!(names_in(dir.path()), vec!["boot-state.json"]);
}

#[test]
fn a_secret_has_its_mode_from_creation_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ca.key");
    // The temporary file is 0600 before a byte is written: no moment where it is 0644.
    let pending = AtomicFile::create(&path, PRIVATE_MODE).expect("create");
    assert_eq!(mode_of(pending.temp_path()), 0o600);
    drop(pending);

    // A world-readable file replaced by a secret becomes 0600 (a new inode, not a chmod).
    fs::write(&path, b"public").expect("seed");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    write_private(&path, b"private key").expect("write");
    assert_eq!(mode_of(&path), 0o600);
    assert_eq!(fs::read(&path).expect("read"), b"private key");

    write_atomic_with_mode(&path, b"x", 0o640).expect("write 0640");
    assert_eq!(mode_of(&path), 0o640);
}

#[test]
fn a_failed_rename_removes_the_temporary_file_and_keeps_the_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A non-empty directory where the file should be: the rename fails.
    let target = dir.path().join("receipt.json");
    fs::create_dir(&target).expect("mkdir");
    fs::write(target.join("inside"), b"kept").expect("write inside");
    let error = write_atomic(&target, b"content").expect_err("cannot replace a directory");
    assert_ne!(error.kind(), io::ErrorKind::NotFound, "{error}");
    assert_eq!(names_in(dir.path()), vec!["receipt.json"]);
    assert_eq!(fs::read(target.join("inside")).expect("read"), b"kept");
}

#[test]
fn a_write_into_a_read_only_directory_fails_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sealed = dir.path().join("sealed");
    fs::create_dir(&sealed).expect("mkdir");
    write_atomic(&sealed.join("config.toml"), b"old").expect("seed");
    fs::set_permissions(&sealed, fs::Permissions::from_mode(0o555)).expect("chmod");
    let privileged = File::create(sealed.join("probe")).is_ok();
    if privileged {
        // Root ignores the mode bits: nothing to check here (the rename test covers cleanup).
        let _ = fs::remove_file(sealed.join("probe"));
    } else {
        let error = write_atomic(&sealed.join("config.toml"), b"new").expect_err("read-only");
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(names_in(&sealed), vec!["config.toml"]);
        assert_eq!(fs::read(sealed.join("config.toml")).expect("read"), b"old");
    }
    fs::set_permissions(&sealed, fs::Permissions::from_mode(0o755)).expect("chmod back");
}

#[test]
fn an_uncommitted_file_is_removed_and_the_target_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("object");
    write_atomic(&target, b"old").expect("seed");
    let mut pending = AtomicFile::create(&target, FILE_MODE).expect("create");
    pending.write_all(b"half of the new").expect("write");
    let temp = pending.temp_path().to_path_buf();
    assert!(temp.exists());
    drop(pending); // e.g. the download failed
    assert!(!temp.exists());
    assert_eq!(fs::read(&target).expect("read"), b"old");
    assert_eq!(names_in(dir.path()), vec!["object"]);
}

#[test]
fn a_missing_directory_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = write_atomic(&dir.path().join("no/such/dir/file"), b"x").expect_err("no dir");
    assert_eq!(error.kind(), io::ErrorKind::NotFound);
    let error = write_atomic(Path::new("/"), b"x").expect_err("no file name");
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn concurrent_writers_never_share_a_temporary_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("shared.json");
    // Held open at once: each has its own temporary file.
    let pending: Vec<AtomicFile> = (0..16)
        .map(|_| AtomicFile::create(&target, FILE_MODE).expect("create"))
        .collect();
    let temps: HashSet<&Path> = pending.iter().map(AtomicFile::temp_path).collect();
    assert_eq!(temps.len(), pending.len());
    drop(pending);
    assert!(names_in(dir.path()).is_empty());

    // Threads replacing one file: every write succeeds (a shared temporary name would make
    // one writer rename the other's file, or find its own gone), and the result is one
    // writer's content whole.
    let payloads: Vec<Vec<u8>> = (0..8u8)
        .map(|t| vec![b'a' + t; 1000 + 977 * t as usize])
        .collect();
    std::thread::scope(|scope| {
        for payload in &payloads {
            let target = &target;
            scope.spawn(move || {
                for _ in 0..50 {
                    write_atomic(target, payload).expect("concurrent write");
                }
            });
        }
    });
    let last = fs::read(&target).expect("read");
    assert!(payloads.contains(&last));
    assert_eq!(names_in(dir.path()), vec!["shared.json"]);
}

#[test]
fn a_stale_temporary_file_does_not_block_a_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("nonce");
    // What a killed process with this pid would have left at the next sequence numbers.
    let next = TEMP_SEQ.load(Ordering::Relaxed);
    for seq in next..next + 64 {
        let stale = format!(".nonce.tmp-{}-{seq}", std::process::id());
        fs::write(dir.path().join(stale), b"stale").expect("stale");
    }
    write_atomic(&target, b"fresh").expect("write past stale names");
    assert_eq!(fs::read(&target).expect("read"), b"fresh");
}

#[test]
fn json_is_pretty_with_a_final_newline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("receipt.json");
    write_json(&path, &serde_json::json!({"version": "2.0"})).expect("write");
    assert_eq!(
        fs::read_to_string(&path).expect("read"),
        "{\n  \"version\": \"2.0\"\n}\n"
    );
    let unserializable: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
    let error = write_json(&path, &unserializable).expect_err("tuple keys are not JSON");
    assert_eq!(error.kind(), io::ErrorKind::Other);
    assert!(fs::read_to_string(&path).expect("read").contains("2.0"));
}

#[test]
fn remove_is_durable_and_a_missing_file_is_fine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("install.json");
    write_atomic(&path, b"{}").expect("write");
    remove(&path).expect("remove");
    assert!(!path.exists());
    remove(&path).expect("missing is fine");
    // Anything else is an error: a directory is not a file.
    fs::create_dir(&path).expect("mkdir");
    assert!(remove(&path).is_err());
}

#[test]
fn rename_moves_between_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let from = dir.path().join("key.pk8");
    let retired = dir.path().join("retired");
    create_dir(&retired).expect("mkdir");
    write_private(&from, b"key").expect("write");
    rename(&from, &retired.join("key-1.pk8")).expect("rename");
    assert!(!from.exists());
    assert_eq!(fs::read(retired.join("key-1.pk8")).expect("read"), b"key");
    assert_eq!(mode_of(&retired.join("key-1.pk8")), 0o600);
    assert!(rename(&from, &retired.join("again")).is_err());
}

#[test]
fn create_dir_makes_every_missing_level_and_accepts_an_existing_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let deep = dir.path().join("state/controller/nested");
    create_dir(&deep).expect("create");
    assert!(deep.is_dir());
    create_dir(&deep).expect("exists already");
    let file = dir.path().join("file");
    fs::write(&file, b"").expect("write");
    assert!(create_dir(&file).is_err(), "a file is in the way");
    assert!(create_dir(&file.join("below")).is_err());
}

#[test]
fn a_temporary_file_elsewhere_commits_into_the_target_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tmp = dir.path().join("tmp");
    let objects = dir.path().join("objects/v1");
    create_dir(&tmp).expect("tmp");
    create_dir(&objects).expect("objects");
    let target = objects.join("payload.zst");
    let mut pending = AtomicFile::create_in(&tmp, &target, FILE_MODE).expect("create");
    assert_eq!(pending.temp_path().parent(), Some(tmp.as_path()));
    assert_eq!(pending.target(), target.as_path());
    pending.write_all(b"streamed").expect("write");
    assert!(
        names_in(&objects).is_empty(),
        "nothing half-written in objects/"
    );
    pending.commit().expect("commit");
    assert_eq!(fs::read(&target).expect("read"), b"streamed");
    assert!(names_in(&tmp).is_empty());
}

#[test]
fn a_positional_writer_reads_back_what_it_wrote_before_the_commit() {
    use std::os::unix::fs::FileExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("b.verity");
    let pending = AtomicFile::create(&target, FILE_MODE).expect("create");
    // As a hash tree is built: a level written at its offset, read back for the next.
    pending
        .file()
        .write_all_at(b"level-1", 4096)
        .expect("write at");
    let mut back = [0u8; 7];
    pending
        .file()
        .read_exact_at(&mut back, 4096)
        .expect("read at");
    assert_eq!(&back, b"level-1");
    assert!(!target.exists(), "nothing is visible before the commit");
    pending.commit().expect("commit");
    assert_eq!(fs::metadata(&target).expect("metadata").len(), 4096 + 7);
}

#[test]
fn temp_names_are_recognised_and_nothing_else_is() {
    let name = temp_name("install.json");
    assert!(is_temp_name(&name), "{name}");
    for other in [
        "install.json",
        ".install.json",
        ".install.json.tmp-",
        ".install.json.tmp-12",
        ".install.json.tmp-12-x",
        "install.json.tmp-1-2",
        "..tmp-1-2",
    ] {
        assert!(!is_temp_name(other), "{other}");
    }
}
