//! TUF 1.0 metadata as the device reads it: the signed envelope and the four role types with
//! their delegations. Strict where the spec is (`_type`, spec version, versions, unique
//! signature key ids), lenient where it allows (unknown fields, hash algorithms, key types).

use crate::error::CatalogError;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// The spec major version this client reads.
const SPEC_MAJOR: &str = "1";
/// The roles root delegates; no delegated role may take their names.
const TOP_LEVEL_ROLES: [&str; 4] = ["root", "timestamp", "snapshot", "targets"];

/// A signed document: the canonical bytes of `signed` and the signatures over them.
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    /// OLPC canonical JSON of the `signed` object, what the signatures sign.
    pub canonical: Vec<u8>,
    /// Signatures by key id (unique: a repeated key id makes the document malformed).
    pub signatures: BTreeMap<String, Vec<u8>>,
}

/// A public key as metadata lists it; its type and scheme are checked when it verifies.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PublicKey {
    pub keytype: String,
    pub scheme: String,
    pub keyval: KeyValue,
}

/// The `keyval` of a key.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct KeyValue {
    pub public: String,
}

/// The key ids trusted for a role and how many of them must sign.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RoleKeys {
    pub keyids: Vec<String>,
    pub threshold: u64,
}

/// Root metadata.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Root {
    pub version: u64,
    pub expires: DateTime<Utc>,
    #[serde(default)]
    pub consistent_snapshot: bool,
    pub keys: BTreeMap<String, PublicKey>,
    pub roles: BTreeMap<String, RoleKeys>,
}

/// What a parent role says about a metadata file: its version, optionally length and hashes.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct MetaFile {
    pub version: u64,
    pub length: Option<u64>,
    pub hashes: Option<BTreeMap<String, String>>,
}

/// Timestamp metadata.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Timestamp {
    pub version: u64,
    pub expires: DateTime<Utc>,
    pub meta: BTreeMap<String, MetaFile>,
}

/// Snapshot metadata.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Snapshot {
    pub version: u64,
    pub expires: DateTime<Utc>,
    pub meta: BTreeMap<String, MetaFile>,
}

/// A target as a targets role signs it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub(crate) struct TargetFile {
    pub length: u64,
    pub hashes: BTreeMap<String, String>,
    #[serde(default)]
    pub custom: Option<Value>,
}

/// Targets metadata (top-level or delegated).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Targets {
    pub version: u64,
    pub expires: DateTime<Utc>,
    #[serde(default)]
    pub targets: BTreeMap<String, TargetFile>,
    pub delegations: Option<Delegations>,
}

/// The roles a targets role delegates to, with their keys.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Delegations {
    pub keys: BTreeMap<String, PublicKey>,
    pub roles: Option<Vec<DelegatedRole>>,
    pub succinct_roles: Option<SuccinctRoles>,
}

/// One delegation: a role name, its keys, the paths it may sign for, and whether the search
/// stops with it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct DelegatedRole {
    pub name: String,
    pub keyids: Vec<String>,
    pub threshold: u64,
    #[serde(default)]
    pub terminating: bool,
    pub paths: Option<Vec<String>>,
    pub path_hash_prefixes: Option<Vec<String>>,
}

/// TAP 15 succinct hashed bins: `2^bit_length` roles named `PREFIX-XX`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct SuccinctRoles {
    pub keyids: Vec<String>,
    pub threshold: u64,
    pub bit_length: u32,
    pub name_prefix: String,
}

/// A role type the client reads, with the checks its `signed` object needs after parsing.
pub(crate) trait RoleType: serde::de::DeserializeOwned {
    /// The `_type` value.
    const TYPE: &'static str;
    fn version(&self) -> u64;
    /// Checks beyond the field types (called after parsing).
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

impl RoleType for Root {
    const TYPE: &'static str = "root";
    fn version(&self) -> u64 {
        self.version
    }
    fn validate(&self) -> Result<(), String> {
        for role in TOP_LEVEL_ROLES {
            let keys = self
                .roles
                .get(role)
                .ok_or_else(|| format!("the {role} role is not defined"))?;
            check_role_keys(role, &keys.keyids, keys.threshold)?;
        }
        Ok(())
    }
}

impl RoleType for Timestamp {
    const TYPE: &'static str = "timestamp";
    fn version(&self) -> u64 {
        self.version
    }
    fn validate(&self) -> Result<(), String> {
        let snapshot = self
            .meta
            .get("snapshot.json")
            .ok_or("meta lists no snapshot.json")?;
        snapshot.validate()
    }
}

impl RoleType for Snapshot {
    const TYPE: &'static str = "snapshot";
    fn version(&self) -> u64 {
        self.version
    }
    fn validate(&self) -> Result<(), String> {
        self.meta.values().try_for_each(MetaFile::validate)
    }
}

impl RoleType for Targets {
    const TYPE: &'static str = "targets";
    fn version(&self) -> u64 {
        self.version
    }
    fn validate(&self) -> Result<(), String> {
        for (path, target) in &self.targets {
            if target.hashes.is_empty() {
                return Err(format!("the target {path} lists no hashes"));
            }
        }
        let Some(delegations) = &self.delegations else {
            return Ok(());
        };
        match (&delegations.roles, &delegations.succinct_roles) {
            (Some(_), Some(_)) => return Err("both roles and succinct_roles are delegated".into()),
            (None, Some(succinct)) => {
                if !(1..=32).contains(&succinct.bit_length) {
                    return Err(format!("bit_length {} is not 1..=32", succinct.bit_length));
                }
                check_role_keys(&succinct.name_prefix, &succinct.keyids, succinct.threshold)?;
            }
            (Some(roles), None) => {
                let mut names = BTreeSet::new();
                for role in roles {
                    if !names.insert(role.name.as_str()) {
                        return Err(format!("the role {} is delegated twice", role.name));
                    }
                    // A delegated role named like a top-level one would share its file.
                    if TOP_LEVEL_ROLES.contains(&role.name.as_str()) {
                        return Err(format!("a delegated role is named {}", role.name));
                    }
                    if role.paths.is_some() && role.path_hash_prefixes.is_some() {
                        return Err(format!(
                            "the role {} has both paths and path_hash_prefixes",
                            role.name
                        ));
                    }
                    check_role_keys(&role.name, &role.keyids, role.threshold)?;
                }
            }
            (None, None) => {}
        }
        Ok(())
    }
}

impl MetaFile {
    fn validate(&self) -> Result<(), String> {
        if self.version == 0 {
            return Err("a meta version is 0".into());
        }
        if self.hashes.as_ref().is_some_and(BTreeMap::is_empty) {
            return Err("a meta entry has an empty hashes object".into());
        }
        Ok(())
    }
}

fn check_role_keys(role: &str, keyids: &[String], threshold: u64) -> Result<(), String> {
    if threshold == 0 {
        return Err(format!("the {role} role has threshold 0"));
    }
    let unique: BTreeSet<&String> = keyids.iter().collect();
    if unique.len() != keyids.len() {
        return Err(format!("the {role} role lists a key id twice"));
    }
    Ok(())
}

/// Parses a metadata document of type `T` (`role` names it in errors).
pub(crate) fn parse<T: RoleType>(role: &str, bytes: &[u8]) -> Result<(Envelope, T), CatalogError> {
    let malformed = |detail: String| CatalogError::Malformed {
        role: role.to_owned(),
        detail,
    };
    let document: Value =
        serde_json::from_slice(bytes).map_err(|error| malformed(error.to_string()))?;
    let signed = document
        .get("signed")
        .filter(|signed| signed.is_object())
        .ok_or_else(|| malformed("there is no signed object".into()))?;
    let signatures = document
        .get("signatures")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("there is no signatures array".into()))?;
    let mut by_keyid = BTreeMap::new();
    for signature in signatures {
        let keyid = signature
            .get("keyid")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("a signature has no keyid".into()))?;
        let sig = signature
            .get("sig")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("a signature has no sig".into()))?;
        // A signature that is not hex cannot verify; it is not a reason to refuse the document.
        let bytes = hex::decode(sig).unwrap_or_default();
        if by_keyid.insert(keyid.to_owned(), bytes).is_some() {
            return Err(malformed(format!("key id {keyid} signs twice")));
        }
    }
    let kind = signed.get("_type").and_then(Value::as_str);
    if kind != Some(T::TYPE) {
        return Err(malformed(format!(
            "_type is {kind:?}, expected {:?}",
            T::TYPE
        )));
    }
    let spec = signed
        .get("spec_version")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("there is no spec_version".into()))?;
    if spec.split('.').next() != Some(SPEC_MAJOR) || spec.split('.').count() < 2 {
        return Err(malformed(format!("spec_version {spec} is not 1.x")));
    }
    let parsed = T::deserialize(signed).map_err(|error| malformed(error.to_string()))?;
    if parsed.version() == 0 {
        return Err(malformed("version is 0".into()));
    }
    parsed.validate().map_err(malformed)?;
    let mut canonical = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(
        &mut canonical,
        olpc_cjson::CanonicalFormatter::new(),
    );
    serde::Serialize::serialize(signed, &mut serializer)
        .map_err(|error| malformed(format!("not canonicalizable: {error}")))?;
    Ok((
        Envelope {
            canonical,
            signatures: by_keyid,
        },
        parsed,
    ))
}

/// Checks `data` against the length and every hash a parent lists. An algorithm this client
/// does not know fails the check: the data cannot be verified.
pub(crate) fn check_length_and_hashes(
    data: &[u8],
    length: Option<u64>,
    hashes: Option<&BTreeMap<String, String>>,
) -> Result<(), HashCheck> {
    if let Some(length) = length
        && data.len() as u64 != length
    {
        return Err(HashCheck::Length {
            expected: length,
            actual: data.len() as u64,
        });
    }
    for (algorithm, expected) in hashes.into_iter().flatten() {
        let actual = digest_hex(algorithm, data).ok_or_else(|| HashCheck::Unsupported {
            algorithm: algorithm.clone(),
        })?;
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(HashCheck::Mismatch {
                algorithm: algorithm.clone(),
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok(())
}

/// Why data did not match what its parent lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HashCheck {
    Length {
        expected: u64,
        actual: u64,
    },
    Mismatch {
        algorithm: String,
        expected: String,
        actual: String,
    },
    Unsupported {
        algorithm: String,
    },
}

/// The hex digest of `data` with a TUF hash algorithm name, if this client knows it.
pub(crate) fn digest_hex(algorithm: &str, data: &[u8]) -> Option<String> {
    match algorithm {
        "sha256" => Some(hex::encode(Sha256::digest(data))),
        "sha512" => Some(hex::encode(sha2::Sha512::digest(data))),
        _ => None,
    }
}

impl Delegations {
    /// The delegated roles that may sign for `target_path`, in order, each with whether it is
    /// terminating.
    pub(crate) fn roles_for_target(&self, target_path: &str) -> Vec<(String, bool)> {
        if let Some(succinct) = &self.succinct_roles {
            return vec![(succinct.role_for_target(target_path), true)];
        }
        // Hash prefixes compare against the path's SHA-256, computed once for all roles.
        let digest = std::cell::OnceCell::new();
        let path_digest = || digest.get_or_init(|| hex::encode(Sha256::digest(target_path)));
        self.roles
            .iter()
            .flatten()
            .filter(|role| role.is_delegated_path(target_path, path_digest))
            .map(|role| (role.name.clone(), role.terminating))
            .collect()
    }

    /// Every role delegated here, in order.
    pub(crate) fn role_names(&self) -> Vec<String> {
        if let Some(succinct) = &self.succinct_roles {
            return succinct.role_names();
        }
        self.roles
            .iter()
            .flatten()
            .map(|role| role.name.clone())
            .collect()
    }

    /// The keys and threshold trusted for `role`, if it is delegated here.
    pub(crate) fn role_keys(&self, role: &str) -> Option<RoleKeys> {
        if let Some(succinct) = &self.succinct_roles {
            return succinct.is_bin(role).then(|| RoleKeys {
                keyids: succinct.keyids.clone(),
                threshold: succinct.threshold,
            });
        }
        self.roles
            .iter()
            .flatten()
            .find(|delegated| delegated.name == role)
            .map(|delegated| RoleKeys {
                keyids: delegated.keyids.clone(),
                threshold: delegated.threshold,
            })
    }
}

impl DelegatedRole {
    /// Whether this role may sign for `target_path`: a `paths` pattern matches it segment by
    /// segment (`*` does not cross `/`), or its hex SHA-256 (`path_digest`) starts with a
    /// listed prefix.
    fn is_delegated_path<'a>(
        &self,
        target_path: &str,
        path_digest: impl Fn() -> &'a String,
    ) -> bool {
        if let Some(patterns) = &self.paths {
            return patterns
                .iter()
                .any(|pattern| path_matches(target_path, pattern));
        }
        if let Some(prefixes) = &self.path_hash_prefixes {
            let digest = path_digest();
            return prefixes.iter().any(|prefix| digest.starts_with(prefix));
        }
        false
    }
}

impl SuccinctRoles {
    fn suffix_len(&self) -> usize {
        format!("{:x}", self.bin_count() - 1).len()
    }

    fn bin_count(&self) -> u64 {
        1u64 << self.bit_length
    }

    fn role_for_target(&self, target_path: &str) -> String {
        let digest = Sha256::digest(target_path.as_bytes());
        let first = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        let bin = u64::from(first) >> (32 - self.bit_length);
        format!(
            "{}-{:0width$x}",
            self.name_prefix,
            bin,
            width = self.suffix_len()
        )
    }

    fn role_names(&self) -> Vec<String> {
        (0..self.bin_count())
            .map(|bin| {
                format!(
                    "{}-{:0width$x}",
                    self.name_prefix,
                    bin,
                    width = self.suffix_len()
                )
            })
            .collect()
    }

    fn is_bin(&self, role: &str) -> bool {
        role.strip_prefix(&self.name_prefix)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|suffix| {
                suffix.len() == self.suffix_len()
                    && u64::from_str_radix(suffix, 16).is_ok_and(|bin| bin < self.bin_count())
                    && suffix
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
            })
    }
}

/// TUF path pattern matching: same number of `/`-separated segments, each matched like
/// Python's `fnmatch` (`*`, `?`, `[seq]`, `[!seq]`), case-sensitively.
pub(crate) fn path_matches(target_path: &str, pattern: &str) -> bool {
    let targets: Vec<&str> = target_path.split('/').collect();
    let patterns: Vec<&str> = pattern.split('/').collect();
    targets.len() == patterns.len()
        && targets
            .iter()
            .zip(&patterns)
            .all(|(segment, pattern)| segment_matches(segment.as_bytes(), pattern.as_bytes()))
}

/// One element of a segment pattern.
enum Token {
    /// `*`: any run of bytes.
    Star,
    /// `?`: one character.
    AnyChar,
    /// `[seq]` or `[!seq]`: one character in (or not in) the class.
    Class(CharClass),
    /// Anything else, byte for byte.
    Byte(u8),
}

/// Matches without backtracking into earlier stars: each token other than `*` consumes
/// at most one way, so only the last star's position needs revisiting, and a match costs
/// O(text × pattern) whatever the pattern (a recursive matcher took exponential time on
/// a pattern of many stars that fails to match: found by the `tuf_metadata` fuzz target).
fn segment_matches(text: &[u8], pattern: &[u8]) -> bool {
    let tokens = tokenize(pattern);
    let (mut t, mut p) = (0, 0);
    // After the last star seen: the token after it, and where its match begins now.
    let mut last_star: Option<(usize, usize)> = None;
    loop {
        if let Some(token) = tokens.get(p) {
            let consumed = match token {
                Token::Star => {
                    last_star = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                Token::AnyChar => {
                    (t < text.len()).then(|| utf8_char_at(text, t).map_or(1, char::len_utf8))
                }
                Token::Class(class) => utf8_char_at(text, t)
                    .filter(|&c| class.matches(c))
                    .map(char::len_utf8),
                Token::Byte(byte) => (text.get(t) == Some(byte)).then_some(1),
            };
            if let Some(n) = consumed {
                t += n;
                p += 1;
                continue;
            }
        } else if t == text.len() {
            return true;
        }
        // A mismatch: let the last star take one byte more, or fail.
        match last_star {
            Some((after_star, from)) if from < text.len() => {
                last_star = Some((after_star, from + 1));
                p = after_star;
                t = from + 1;
            }
            _ => return false,
        }
    }
}

/// The pattern's tokens; a `[` without its `]` is a literal. A `[` with no `]` after it
/// is known as literal without scanning the rest of the pattern, so a pattern of many
/// unclosed `[` costs linear time, not quadratic.
fn tokenize(pattern: &[u8]) -> Vec<Token> {
    let mut tokens = Vec::new();
    let last_close = pattern.iter().rposition(|&b| b == b']');
    let mut p = 0;
    while let Some(&byte) = pattern.get(p) {
        p += 1;
        tokens.push(match byte {
            b'*' => Token::Star,
            b'?' => Token::AnyChar,
            b'[' if last_close.is_none_or(|close| close < p) => Token::Byte(b'['),
            b'[' => match char_class(&pattern[p..]) {
                Some((class, after)) => {
                    p = pattern.len() - after.len();
                    Token::Class(class)
                }
                None => Token::Byte(b'['),
            },
            literal => Token::Byte(literal),
        });
    }
    tokens
}

/// The character starting at byte `at` of `text`, if one starts there.
fn utf8_char_at(text: &[u8], at: usize) -> Option<char> {
    let lead = *text.get(at)?;
    let width = match lead {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => return None,
    };
    std::str::from_utf8(text.get(at..at + width)?)
        .ok()?
        .chars()
        .next()
}

struct CharClass {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl CharClass {
    fn matches(&self, c: char) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }
}

/// Parses `[...]` after the `[`; `None` when it is not closed (then `[` is a literal).
fn char_class(pattern: &[u8]) -> Option<(CharClass, &[u8])> {
    let text = std::str::from_utf8(pattern).ok()?;
    let mut chars = text.char_indices().peekable();
    let negated = matches!(chars.peek(), Some((_, '!')));
    if negated {
        chars.next();
    }
    let mut ranges = Vec::new();
    let mut first = true;
    while let Some((index, c)) = chars.next() {
        if c == ']' && !first {
            return Some((CharClass { negated, ranges }, &pattern[index + 1..]));
        }
        first = false;
        let mut dash_ahead = chars.clone();
        if let (Some((_, '-')), Some((_, hi))) = (dash_ahead.next(), dash_ahead.next())
            && hi != ']'
        {
            chars.next();
            chars.next();
            ranges.push((c, hi));
        } else {
            ranges.push((c, c));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `tuf_metadata` fuzz target's timeout: many stars before a byte that never
    /// matches took exponential time; a pattern as long as metadata allows must not
    /// recurse either.
    #[test]
    fn star_patterns_that_fail_cost_linear_time() {
        let started = std::time::Instant::now();
        let pattern = format!("{}\0", "*".repeat(90));
        assert!(!path_matches("172e{", &pattern));
        assert!(!path_matches(
            &"a".repeat(2000),
            &format!("{}b", "*a".repeat(500))
        ));
        assert!(path_matches(&"x".repeat(200_000), &"?".repeat(200_000)));
        // Many unclosed `[`: each a literal, known without scanning what follows.
        assert!(path_matches(&"[".repeat(200_000), &"[".repeat(200_000)));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
    use ferry_types::Diagnose;

    #[test]
    fn patterns_match_segment_by_segment() {
        assert!(path_matches("README.md", "*.md"));
        assert!(
            !path_matches("releases/README.md", "*.md"),
            "* does not cross /"
        );
        assert!(path_matches("releases/x/x_v1", "releases/*/*"));
        assert!(path_matches("foo-1.tgz", "foo-?.tgz"));
        assert!(!path_matches("foo-alpha.tgz", "foo-?.tgz"));
        assert!(!path_matches("README.MD", "*.md"), "case-sensitive");
        assert!(path_matches("a1", "a[0-9]"));
        assert!(!path_matches("a1", "a[!0-9]"));
        assert!(path_matches("a*b", "a[*]b"));
        assert!(path_matches("[x", "[x"), "an unclosed class is literal");
        assert!(path_matches("é-1", "?-[0-9]"), "? is one character");
        assert!(path_matches("abcabd", "*ab?"));
        assert!(!path_matches("abcab", "*ab?"));
        assert!(path_matches("a[", "a["), "an unclosed [ is literal");
        assert!(path_matches("anything at all", "*"));
        assert!(!path_matches("a/b", "*"));
    }

    #[test]
    fn succinct_bins_are_named_and_found_like_python_tuf() {
        let bins = SuccinctRoles {
            keyids: vec![],
            threshold: 1,
            bit_length: 8,
            name_prefix: "bin".into(),
        };
        assert_eq!(bins.role_names().len(), 256);
        assert_eq!(bins.role_names()[10], "bin-0a");
        let digest = Sha256::digest(b"target");
        assert_eq!(
            bins.role_for_target("target"),
            format!("bin-{:02x}", digest[0])
        );
        assert!(bins.is_bin("bin-ff") && !bins.is_bin("bin-100") && !bins.is_bin("bin-FF"));
    }

    fn targets_delegating(role: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "signatures": [],
            "signed": {
                "_type": "targets", "spec_version": "1.0.31", "version": 1,
                "expires": "2100-01-01T00:00:00Z", "targets": {},
                "delegations": {"keys": {}, "roles": [
                    {"name": role, "keyids": ["k"], "threshold": 1, "paths": ["*"],
                     "terminating": false}
                ]}
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_delegated_role_may_not_take_a_top_level_name() {
        assert!(parse::<Targets>("targets", &targets_delegating("team-a")).is_ok());
        for name in TOP_LEVEL_ROLES {
            let error = parse::<Targets>("targets", &targets_delegating(name)).unwrap_err();
            assert_eq!(error.code(), "CATALOG_MALFORMED", "{name}: {error}");
        }
    }

    #[test]
    fn unknown_hash_algorithms_fail_the_check() {
        let mut hashes = BTreeMap::new();
        hashes.insert("sha512".to_owned(), digest_hex("sha512", b"x").unwrap());
        assert_eq!(
            check_length_and_hashes(b"x", Some(1), Some(&hashes)),
            Ok(())
        );
        hashes.insert("md5".to_owned(), "00".into());
        assert!(matches!(
            check_length_and_hashes(b"x", Some(1), Some(&hashes)),
            Err(HashCheck::Unsupported { .. })
        ));
    }
}
