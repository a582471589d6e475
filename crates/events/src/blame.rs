//! Who is to blame for a failure, by its code: the release (what was published: its
//! artifacts, its image, how it boots) or the device's environment (its network, disk,
//! power, configuration, the server, ferry itself). The rollout halt rule (DESIGN §10)
//! counts only failures that blame the release; `tests/blame.rs` checks that every code
//! the product can emit is in [`BLAME`].

use serde::{Deserialize, Serialize};

/// Whose fault a failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blame {
    /// The release: a damaged or inconsistent artifact, an image that does not fit, boot,
    /// verify or pass its health checks. Counts against a rollout.
    Release,
    /// The device's environment: network, disk, power, configuration, enrollment, the
    /// server, or a fault of ferry itself. Does not count against a rollout.
    Environment,
}

impl Blame {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Blame::Release => "release",
            Blame::Environment => "environment",
        }
    }
}

/// Whom `code` blames; `None` for a code this build does not know (a newer device's): the
/// server then counts it as the environment's, so an unknown code never halts a rollout.
pub fn blame(code: &str) -> Option<Blame> {
    BLAME
        .binary_search_by(|(known, _)| (*known).cmp(code))
        .ok()
        .map(|idx| BLAME[idx].1)
}

/// Every code ferry emits and whom it blames, sorted by code.
pub const BLAME: &[(&str, Blame)] = &[
    ("ADMIN_TOKEN_INVALID", Blame::Environment),
    ("AGENT_API", Blame::Environment),
    ("AGENT_NOT_RUNNING", Blame::Environment),
    ("AGENT_RUNNING", Blame::Environment),
    ("AGENT_SOCKET", Blame::Environment),
    ("AGENT_SUSPENDED", Blame::Environment),
    ("AUDIENCE_INVALID", Blame::Environment),
    ("BAD_IDENTITY", Blame::Environment),
    ("BAD_REQUEST", Blame::Environment),
    ("BAD_VALUE", Blame::Environment),
    ("BASE_MISMATCH", Blame::Release),
    ("BATTERY_LOW", Blame::Environment),
    ("BLOB_CORRUPT", Blame::Environment),
    ("BLOB_IO", Blame::Environment),
    ("BLOB_MISSING", Blame::Environment),
    ("BODY_TOO_LARGE", Blame::Environment),
    ("BOOT_CRASHED", Blame::Release),
    ("BOOT_ENV_CONFIG_INVALID", Blame::Environment),
    ("BOOT_ENV_CORRUPT", Blame::Environment),
    ("BOOT_ENV_CRC_MISMATCH", Blame::Environment),
    ("BOOT_ENV_NO_VALID_COPY", Blame::Environment),
    ("BOOT_ENV_TOO_LARGE", Blame::Environment),
    ("BOOT_ENV_VAR_INVALID", Blame::Environment),
    ("BOOT_IO", Blame::Environment),
    ("BOOT_NO_TRIAL_PENDING", Blame::Environment),
    ("BOOT_REFLASH_REQUIRED", Blame::Environment),
    ("BOOT_SLOT_INVALID", Blame::Environment),
    ("BOOT_SLOT_IS_PRIMARY", Blame::Environment),
    ("BOOT_STATE_CORRUPT", Blame::Environment),
    ("BOOT_STATE_INVALID", Blame::Environment),
    ("BOOT_STATE_MISSING", Blame::Environment),
    ("BOOT_TRIES_EXHAUSTED", Blame::Release),
    ("BOOT_TRIES_OUT_OF_RANGE", Blame::Environment),
    ("CANCELLED", Blame::Environment),
    ("CATALOG_BAD_SIGNATURE", Blame::Environment),
    ("CATALOG_CACHE_DAMAGED", Blame::Environment),
    ("CATALOG_CLOCK_AHEAD", Blame::Environment),
    ("CATALOG_CLOCK_BACKWARDS", Blame::Environment),
    ("CATALOG_CLOCK_BEHIND", Blame::Environment),
    ("CATALOG_DIGEST_INVALID", Blame::Environment),
    ("CATALOG_ENDLESS_DATA", Blame::Environment),
    ("CATALOG_EXPIRED", Blame::Environment),
    ("CATALOG_HASH_UNSUPPORTED", Blame::Environment),
    ("CATALOG_IO", Blame::Environment),
    ("CATALOG_MALFORMED", Blame::Environment),
    ("CATALOG_MIX_AND_MATCH", Blame::Environment),
    ("CATALOG_PINNED_ROOT_INVALID", Blame::Environment),
    ("CATALOG_RELEASE_INFO_INVALID", Blame::Release),
    ("CATALOG_ROLLBACK", Blame::Environment),
    ("CATALOG_ROOT_CHAIN_TOO_LONG", Blame::Environment),
    ("CATALOG_SIGNING", Blame::Environment),
    ("CATALOG_TARGET_MISMATCH", Blame::Release),
    ("CATALOG_TARGET_NAME_INVALID", Blame::Environment),
    ("CATALOG_TARGET_TOO_LONG", Blame::Release),
    ("CATALOG_TARGET_UNKNOWN", Blame::Environment),
    ("CATALOG_THROTTLED", Blame::Environment),
    ("CATALOG_TUF", Blame::Environment),
    ("CATALOG_UNREACHABLE", Blame::Environment),
    ("CATALOG_URL_INVALID", Blame::Environment),
    ("CATALOG_VERSION_INVALID", Blame::Environment),
    ("CHUNKS_FAILED", Blame::Release),
    ("CHUNK_CORRUPT", Blame::Release),
    ("CHUNK_MISSING", Blame::Release),
    ("CLOCK_SKEW", Blame::Environment),
    ("CONFIG_INVALID", Blame::Environment),
    ("CREDENTIAL_BAD_SIGNATURE", Blame::Environment),
    ("CREDENTIAL_MALFORMED", Blame::Environment),
    ("CREDENTIAL_MISSING", Blame::Environment),
    ("DATA_ENCODE", Blame::Environment),
    ("DELTA_COMPRESSION", Blame::Release),
    ("DELTA_CORRUPT", Blame::Release),
    ("DELTA_IO", Blame::Environment),
    ("DELTA_LIMIT", Blame::Release),
    ("DEVICE_BUSY", Blame::Environment),
    ("DEVICE_CLASS_INVALID", Blame::Environment),
    ("DEVICE_CORRUPT", Blame::Environment),
    ("DEVICE_EXISTS", Blame::Environment),
    ("DEVICE_ID_INVALID", Blame::Environment),
    ("DEVICE_ID_ZERO", Blame::Environment),
    ("DEVICE_IO", Blame::Environment),
    ("DEVICE_MISSING", Blame::Environment),
    ("DIGEST_INVALID", Blame::Environment),
    ("DIGEST_MISMATCH", Blame::Release),
    ("DUPLICATE_VERSION", Blame::Environment),
    ("ENROLLMENT_TOKEN_INVALID", Blame::Environment),
    ("FACTS_CORRUPT", Blame::Environment),
    ("FACTS_IO", Blame::Environment),
    ("HEALTH_CHECK_FAILED", Blame::Release),
    ("IMAGE_UNALIGNED", Blame::Environment),
    ("INDEX_INVALID", Blame::Release),
    ("INJECTED_FAULT", Blame::Environment),
    ("INSTANCE_EXISTS", Blame::Environment),
    ("INSTANCE_ID_INVALID", Blame::Environment),
    ("INVALID_ARGUMENT", Blame::Environment),
    ("JOURNAL_CORRUPT", Blame::Environment),
    ("JOURNAL_IO", Blame::Environment),
    ("JOURNAL_POISONED", Blame::Environment),
    ("JOURNAL_RECORD_RESTORED", Blame::Environment),
    ("JOURNAL_TORN", Blame::Environment),
    ("KEYSET_ALREADY_LISTED", Blame::Environment),
    ("KEYSET_DAMAGED", Blame::Environment),
    ("KEYSET_MALFORMED", Blame::Environment),
    ("KEYSET_MISSING", Blame::Environment),
    ("KEYSET_RETIRE_CURRENT", Blame::Environment),
    ("KEYSET_ROLLED_BACK", Blame::Environment),
    ("KEYSET_UNKNOWN_KEY", Blame::Environment),
    ("KEYSET_UNUSABLE", Blame::Environment),
    ("KEY_ID_MISMATCH", Blame::Environment),
    ("KEY_MALFORMED", Blame::Environment),
    ("LOW_POWER_MODE", Blame::Environment),
    ("MANIFEST_INVALID", Blame::Release),
    ("MANIFEST_MISMATCH", Blame::Release),
    ("METERED_NETWORK", Blame::Environment),
    ("NETWORK_TIMEOUT", Blame::Environment),
    ("NONCE_REUSED", Blame::Environment),
    ("NOT_ENOUGH_SPACE", Blame::Environment),
    ("NOT_ENROLLED", Blame::Environment),
    ("NOT_FOUND", Blame::Environment),
    ("NOT_SIGNED", Blame::Environment),
    ("NO_ACTION", Blame::Environment),
    ("NO_PAYLOAD", Blame::Environment),
    ("NO_SUCH_LABEL", Blame::Environment),
    ("NO_TRANSITION", Blame::Environment),
    ("OUTBOX_CORRUPT", Blame::Environment),
    ("OUTBOX_IO", Blame::Environment),
    ("OVERLOADED", Blame::Environment),
    ("PAYLOAD_CORRUPT", Blame::Release),
    ("PAYLOAD_IO", Blame::Environment),
    ("PAYLOAD_TRUNCATED", Blame::Environment),
    ("PKI_CERTIFICATE", Blame::Environment),
    ("PKI_IO", Blame::Environment),
    ("RANGES_UNSUPPORTED", Blame::Environment),
    ("RANGE_NOT_SATISFIABLE", Blame::Environment),
    ("RATE_LIMITED", Blame::Environment),
    ("REFUSAL_MALFORMED", Blame::Environment),
    ("REFUSAL_UNKNOWN_CODE", Blame::Environment),
    ("REPLAY_DIVERGED", Blame::Environment),
    ("REPORT_INVALID", Blame::Environment),
    ("REPORT_OTHER_DEVICE", Blame::Environment),
    ("REPORT_VERSION_UNSUPPORTED", Blame::Environment),
    ("REVOKED_DEVICE", Blame::Environment),
    ("ROOT_INVALID", Blame::Environment),
    ("ROOT_NOT_PINNED", Blame::Environment),
    ("SEAL_FAILED", Blame::Release),
    ("SEAL_HASH_BLOCK_CORRUPT", Blame::Release),
    ("SEAL_HASH_OFFSET_UNALIGNED", Blame::Release),
    ("SEAL_HEX_INVALID", Blame::Release),
    ("SEAL_IMAGE_EMPTY", Blame::Release),
    ("SEAL_IMAGE_TRUNCATED", Blame::Release),
    ("SEAL_IMAGE_UNALIGNED", Blame::Release),
    ("SEAL_IO", Blame::Environment),
    ("SEAL_LEAF_COUNT_MISMATCH", Blame::Release),
    ("SEAL_MISMATCH", Blame::Release),
    ("SEAL_MISSING", Blame::Environment),
    ("SEAL_ROOT_MISMATCH", Blame::Release),
    ("SEAL_SUPERBLOCK_INVALID", Blame::Release),
    ("SEAL_SUPERBLOCK_MISMATCH", Blame::Release),
    ("SEAL_TREE_OVERLAPS_IMAGE", Blame::Release),
    ("SEAL_TREE_TRUNCATED", Blame::Release),
    ("SERVER_DATABASE", Blame::Environment),
    ("SERVER_INVALID", Blame::Environment),
    ("SERVER_IO", Blame::Environment),
    ("SERVER_REFUSED", Blame::Environment),
    ("SERVER_SECRETS", Blame::Environment),
    ("SERVER_STORE", Blame::Environment),
    ("SERVER_UNREACHABLE", Blame::Environment),
    ("SHUTTING_DOWN", Blame::Environment),
    ("SLOT_TOO_SMALL", Blame::Release),
    ("SLOT_UNKNOWN", Blame::Environment),
    ("SLOT_VERIFY_FAILED", Blame::Release),
    ("STATE_CORRUPT", Blame::Environment),
    ("STATE_IO", Blame::Environment),
    ("STATE_MISSING", Blame::Environment),
    ("SUSPENDED", Blame::Environment),
    ("TABLE_DEAD_END", Blame::Environment),
    ("TABLE_DUPLICATE_ROW", Blame::Environment),
    ("TABLE_FAILURE_UNHANDLED", Blame::Environment),
    ("TABLE_FINAL_HAS_ROWS", Blame::Environment),
    ("TABLE_INVALID", Blame::Environment),
    ("TABLE_INVALID_NAME", Blame::Environment),
    ("TABLE_TRAP", Blame::Environment),
    ("TABLE_UNKNOWN_EXEMPTION", Blame::Environment),
    ("TABLE_UNREACHABLE_STATE", Blame::Environment),
    ("TICKET_BAD_SIGNATURE", Blame::Environment),
    ("TICKET_COMPONENT_MISSING", Blame::Environment),
    ("TICKET_KEY_NOT_TRUSTED", Blame::Environment),
    ("TICKET_MALFORMED", Blame::Environment),
    ("TICKET_MISSING", Blame::Environment),
    ("TICKET_NONCE_MISSING", Blame::Environment),
    ("TICKET_OTHER_DEVICE", Blame::Environment),
    ("TICKET_OTHER_NONCE", Blame::Environment),
    ("TICKET_ROOT_HASH_MISMATCH", Blame::Environment),
    ("TLS_CERT_NOT_VALID_NOW", Blame::Environment),
    ("TLS_CERT_REFUSED", Blame::Environment),
    ("TLS_CONFIG", Blame::Environment),
    ("TLS_HANDSHAKE_FAILED", Blame::Environment),
    ("TLS_INTERCEPTED", Blame::Environment),
    ("TLS_WRONG_NAME", Blame::Environment),
    ("UNKNOWN_DEVICE", Blame::Environment),
    ("VERSION_INVALID", Blame::Environment),
    ("WINDOW_TIME_ZONE", Blame::Environment),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_without_duplicates_and_looks_up() {
        assert!(BLAME.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(blame("SEAL_MISMATCH"), Some(Blame::Release));
        assert_eq!(blame("HEALTH_CHECK_FAILED"), Some(Blame::Release));
        assert_eq!(blame("BOOT_TRIES_EXHAUSTED"), Some(Blame::Release));
        assert_eq!(blame("SERVER_UNREACHABLE"), Some(Blame::Environment));
        assert_eq!(blame("CLOCK_SKEW"), Some(Blame::Environment));
        assert_eq!(blame("NOT_A_CODE"), None);
    }
}
