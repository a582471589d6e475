//! Every error code the product can emit is classified as the release's fault or the
//! environment's: the codes are read from the workspace's sources (each `fn code` of a
//! `Diagnose` implementor, and the codes reports are built with by hand), so a new code
//! without a row in `BLAME` fails here.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Upper-case string literals (`"SEAL_MISMATCH"`) in `text`.
fn literals(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for piece in text.split('"').skip(1).step_by(2) {
        let code = piece.len() >= 3
            && piece.starts_with(|c: char| c.is_ascii_uppercase())
            && piece
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if code {
            found.push(piece.to_owned());
        }
    }
    found
}

/// The body of every `fn code(&self) -> &'static str { … }` in `text`.
fn code_fn_bodies(text: &str) -> Vec<&str> {
    let mut bodies = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("fn code(&self) -> &'static str {") {
        let start = at + "fn code(&self) -> &'static str {".len();
        let mut depth = 1;
        let mut end = start;
        for (idx, c) in rest[start..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = start + idx;
                break;
            }
        }
        bodies.push(&rest[start..end]);
        rest = &rest[end..];
    }
    bodies
}

#[test]
fn every_code_the_product_emits_is_classified() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&crates).unwrap() {
        let src = entry.unwrap().path().join("src");
        // The CLI's own failures (usage, demo) never reach a device's reports.
        if src.is_dir() && !src.starts_with(crates.join("cli")) {
            rust_files(&src, &mut files);
        }
    }
    let mut codes = std::collections::BTreeSet::new();
    let mut n_impls = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for body in code_fn_bodies(&text) {
            n_impls += 1;
            codes.extend(literals(body));
        }
        // Reports made by hand (a boot that crashed) and boot control's own codes.
        for line in text.lines() {
            if line.contains("code: \"") || line.contains("pub const BOOT_") {
                codes.extend(literals(line));
            }
        }
    }
    assert!(n_impls >= 20, "found only {n_impls} Diagnose implementors");
    for known in [
        "SEAL_MISMATCH",
        "BOOT_CRASHED",
        "BOOT_TRIES_EXHAUSTED",
        "OUTBOX_IO",
    ] {
        assert!(codes.contains(known), "the walk missed {known}");
    }
    let missing: Vec<&String> = codes
        .iter()
        .filter(|code| ferry_events::blame(code).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "codes without a row in ferry_events::BLAME: {missing:?}"
    );
}
