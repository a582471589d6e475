//! External check against GRUB's own `grub-editenv` (Debian grub-common):
//! it reads what we write, and we read what it writes.

mod common;

use std::collections::BTreeSet;

use common::{require_tool, run, temp_dir};
use ferry_boot::vars::EnvMap;
use ferry_boot::{BootControl, BootError, BootState, GrubBootControl, Slot, grub};

fn editenv() -> std::path::PathBuf {
    require_tool("grub-editenv", "grub-common")
}

fn listing(text: &str) -> BTreeSet<String> {
    text.lines().map(str::to_owned).collect()
}

#[test]
fn grub_editenv_lists_what_we_write() -> Result<(), BootError> {
    let tool = editenv();
    let dir = temp_dir();
    let path = dir.path().join("grubenv");
    let path_text = path.to_string_lossy().into_owned();
    let mut env = EnvMap::new();
    env.insert("saved_entry".to_owned(), "gnulinux".to_owned());
    env.insert("odd".to_owned(), "back\\slash and = sign".to_owned());
    grub::write_env_block(&path, &env)?;
    let control = GrubBootControl::new(&path);
    control.store(&BootState::new(Slot::A).set_trial(Slot::B, 3)?)?;

    let listed = listing(&run(&tool, &[&path_text, "list"]));
    let expected: BTreeSet<String> = [
        "saved_entry=gnulinux",
        "odd=back\\slash and = sign",
        "ORDER=B A",
        "A_OK=1",
        "B_OK=0",
        "A_TRY=0",
        "B_TRY=3",
        "FERRY_PRIMARY=A",
        "FERRY_TRIAL=B",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(listed, expected);
    Ok(())
}

#[test]
fn grub_editenv_reads_a_newline_escape_we_wrote() -> Result<(), BootError> {
    let tool = editenv();
    let dir = temp_dir();
    let path = dir.path().join("grubenv");
    let path_text = path.to_string_lossy().into_owned();
    let mut env = EnvMap::new();
    env.insert("two_lines".to_owned(), "first\nsecond".to_owned());
    grub::write_env_block(&path, &env)?;
    // grub-editenv prints the value raw, newline included.
    assert_eq!(
        run(&tool, &[&path_text, "list"]),
        "two_lines=first\nsecond\n"
    );
    // And edits around it without damage.
    run(&tool, &[&path_text, "set", "after=1"]);
    let env = grub::read_env_block(&path)?;
    assert_eq!(
        env.get("two_lines").map(String::as_str),
        Some("first\nsecond")
    );
    assert_eq!(env.get("after").map(String::as_str), Some("1"));
    Ok(())
}

#[test]
fn we_read_what_grub_editenv_writes() -> Result<(), BootError> {
    let tool = editenv();
    let dir = temp_dir();
    let path = dir.path().join("grubenv");
    let path_text = path.to_string_lossy().into_owned();
    run(&tool, &[&path_text, "create"]);
    assert_eq!(std::fs::metadata(&path).map(|m| m.len()).ok(), Some(1024));
    assert_eq!(grub::read_env_block(&path)?, EnvMap::new());
    run(
        &tool,
        &[&path_text, "set", "k=v", "slash=a\\b", "nl=x\ny", "empty="],
    );
    let env = grub::read_env_block(&path)?;
    let get = |name: &str| env.get(name).map(String::as_str);
    assert_eq!(get("k"), Some("v"));
    assert_eq!(get("slash"), Some("a\\b"));
    assert_eq!(get("nl"), Some("x\ny"));
    assert_eq!(get("empty"), Some(""));
    run(&tool, &[&path_text, "unset", "k"]);
    assert_eq!(grub::read_env_block(&path)?.get("k"), None);
    Ok(())
}

#[test]
fn a_bootloader_side_countdown_by_grub_editenv_is_seen_in_the_state() -> Result<(), BootError> {
    let tool = editenv();
    let dir = temp_dir();
    let path = dir.path().join("grubenv");
    let path_text = path.to_string_lossy().into_owned();
    run(&tool, &[&path_text, "create"]);
    let control = GrubBootControl::new(&path);
    control.store(&BootState::new(Slot::A).set_trial(Slot::B, 3)?)?;
    // What grub.cfg's save_env does after counting one try down.
    run(&tool, &[&path_text, "set", "B_TRY=2"]);
    let state = control.load()?;
    assert_eq!(state.trial().map(|trial| trial.tries_left), Some(2));
    // A commit we store is seen by grub-editenv.
    control.store(&state.mark_good(Slot::B)?)?;
    let listed = listing(&run(&tool, &[&path_text, "list"]));
    assert!(
        listed.contains("B_OK=1") && listed.contains("FERRY_PRIMARY=B"),
        "{listed:?}"
    );
    Ok(())
}
