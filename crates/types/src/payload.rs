//! [`PayloadKind`]: what wrote a slot. Receipts, the install record and event reports
//! spell it the same way.

use serde::{Deserialize, Serialize};

/// What wrote a slot. Serialized lowercase (`factory`, `full`, `delta`, `chunks`), as
/// receipts and `cache/install.json` have always spelled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadKind {
    /// The image `device init` put in slot A.
    Factory,
    /// The full payload: every frame downloaded.
    Full,
    /// A tailored delta from the running version.
    Delta,
    /// Chunk reuse: the chunks the running slot lacks, then assembly.
    Chunks,
}

impl PayloadKind {
    /// Every kind, in declaration order.
    pub const ALL: [PayloadKind; 4] = [
        PayloadKind::Factory,
        PayloadKind::Full,
        PayloadKind::Delta,
        PayloadKind::Chunks,
    ];

    /// The name receipts, the journal and event reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadKind::Factory => "factory",
            PayloadKind::Full => "full",
            PayloadKind::Delta => "delta",
            PayloadKind::Chunks => "chunks",
        }
    }
}

impl std::fmt::Display for PayloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for PayloadKind {
    type Err = ();
    /// The lowercase name, as [`PayloadKind::as_str`] spells it.
    fn from_str(text: &str) -> Result<PayloadKind, ()> {
        PayloadKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or(())
    }
}
