//! The agent's modules keep the dependency order its crate docs state: each module
//! names (`use crate::…` or a `crate::…` path) only modules listed before it, so none
//! imports a module that imports it back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The agent's modules, lowest first, as `lib.rs` lists them.
const ORDER: &[&str] = &[
    "layout",
    "facts",
    "policy",
    "stop",
    "error",
    "error::diagnose",
    "error::tests",
    "warnings",
    "progress::estimate",
    "progress::phases",
    "progress",
    "machines",
    "device",
    "client",
    "report::build",
    "journal",
    "offer",
    "trust::personalize",
    "trust::catalog",
    "trust::director",
    "trust",
    "report::deliver",
    "report::rates",
    "report",
    "scan",
    "install::pace",
    "progress::history",
    "progress::log",
    "progress::figures",
    "progress::replay",
    "progress::tracker",
    "install::ranges",
    "install::chunks",
    "install::delta",
    "install::spool",
    "install::seal",
    "install::download",
    "install::record",
    "install::purge",
    "install::sizing",
    "install::meter",
    "install::attempts",
    "install::attempts::tests",
    "install::controller",
    "install::update",
    "install",
    "why",
    "boot::health",
    "boot::watch",
    "boot::reboot",
    "boot",
    "status",
    "doctor::check",
    "doctor::subject",
    "doctor::net",
    "doctor::config",
    "doctor::identity",
    "doctor::trust",
    "doctor::network",
    "doctor::server",
    "doctor::clock",
    "doctor::catalog",
    "doctor::enrollment",
    "doctor::space",
    "doctor::cache",
    "doctor::boot",
    "doctor::conflicts",
    "doctor::diagnose",
    "doctor::fix",
    "doctor",
    "provision",
];

#[test]
fn every_module_names_only_modules_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&src);
    let listed: Vec<&String> = modules.keys().filter(|m| !m.is_empty()).collect();
    for module in &listed {
        assert!(
            ORDER.contains(&module.as_str()),
            "{module} is not in ORDER (and the order in lib.rs's docs)"
        );
    }
    let mut violations = Vec::new();
    for (module, path) in &modules {
        if module.is_empty() {
            continue; // lib.rs declares everything
        }
        let level = position(module);
        let text = code_of(&std::fs::read_to_string(path).unwrap());
        for used in crate_paths(&text, module) {
            let Some(target) = longest_module(&modules, &used) else {
                continue;
            };
            if target.is_empty() || target == *module {
                continue; // the crate root's re-exports (AgentError), or itself
            }
            if position(&target) >= level {
                violations.push(format!("{module} names {target} ({used})"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "modules naming modules at or above them:\n{}",
        violations.join("\n")
    );
}

fn position(module: &str) -> usize {
    ORDER
        .iter()
        .position(|m| *m == module)
        .unwrap_or(usize::MAX)
}

/// Every module of the crate, by path (`install::attempts`), with its file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            found.insert(parts.join("::"), path);
        }
    }
    found
}

/// The source without comments and without its unit tests.
fn code_of(text: &str) -> String {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    code.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .map(|line| line.split(" //").next().unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::…` path the code names (use groups expanded), with `super::` made
/// absolute.
fn crate_paths(code: &str, module: &str) -> Vec<String> {
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    let code = code.replace(
        "super::",
        &format!("crate::{parent}::").replace("crate::::", "crate::"),
    );
    let mut paths = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let tail = &rest[at + "crate::".len()..];
        let end = path_end(tail);
        expand("", &tail[..end], &mut paths);
        rest = &tail[end..];
    }
    paths
}

/// Where a path (with `{…}` groups) starting `text` ends.
fn path_end(text: &str) -> usize {
    let mut depth = 0usize;
    for (idx, ch) in text.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            c if depth == 0 && !(c.is_alphanumeric() || c == '_' || c == ':') => return idx,
            _ => {}
        }
    }
    text.len()
}

/// Expands `a::{b, c::{d}}` into `a::b`, `a::c::d`.
fn expand(prefix: &str, path: &str, out: &mut Vec<String>) {
    let Some(open) = path.find('{') else {
        out.push(format!("{prefix}{}", path.trim().trim_end_matches("::")));
        return;
    };
    let head = format!("{prefix}{}", &path[..open]);
    let inner = &path[open + 1..path.rfind('}').unwrap_or(path.len())];
    let mut depth = 0usize;
    let mut start = 0;
    for (idx, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand(&head, inner[start..idx].trim(), out);
                start = idx + 1;
            }
            _ => {}
        }
    }
    if !inner[start..].trim().is_empty() {
        expand(&head, inner[start..].trim(), out);
    }
}

/// The module a path names (its longest prefix that is a module), if any.
fn longest_module(modules: &BTreeMap<String, PathBuf>, path: &str) -> Option<String> {
    let segments: Vec<&str> = path
        .split("::")
        .map(|s| s.split(" as ").next().unwrap_or(s).trim())
        .filter(|s| !s.is_empty() && *s != "self")
        .collect();
    (0..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|candidate| modules.contains_key(candidate))
}

#[test]
fn the_checker_sees_grouped_and_inline_paths() {
    let code = "use crate::install::{attempts::{self, Attempts}, record::InstallProgress};\n\
                let x = crate::journal::bytes_received(1);\nuse super::seal;";
    let paths = crate_paths(code, "install::controller");
    assert_eq!(
        paths,
        [
            "install::attempts::self",
            "install::attempts::Attempts",
            "install::record::InstallProgress",
            "journal::bytes_received",
            "install::seal",
        ]
    );
}
