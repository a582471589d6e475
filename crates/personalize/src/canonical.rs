//! Canonical JSON as TUF signs it (OLPC canonical JSON via `olpc-cjson`), and the `_type`
//! markers that keep a ticket from ever passing for a credential and back.

use serde::Serialize;

/// Serialises `value` as OLPC canonical JSON: keys sorted, no whitespace, only `"` and `\`
/// escaped.
///
/// Only for this crate's own types, which hold no floats and no non-string map keys, so
/// serialisation cannot fail; if it ever did, the empty output would fail every signature
/// check rather than panic.
pub(crate) fn to_canonical_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let mut serializer =
        serde_json::Serializer::with_formatter(&mut out, olpc_cjson::CanonicalFormatter::new());
    match value.serialize(&mut serializer) {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
}

/// Declares a zero-sized `_type` marker that serialises as one fixed string and refuses any
/// other on input.
macro_rules! type_marker {
    ($name:ident, $tag:literal) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub(crate) struct $name;

        impl $name {
            #[allow(dead_code)]
            pub(crate) const TAG: &'static str = $tag;
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str($tag)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                use serde::de::Error as _;
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                if text == $tag {
                    Ok($name)
                } else {
                    Err(D::Error::custom(format!(
                        "_type is {:?}, expected {:?}",
                        text, $tag
                    )))
                }
            }
        }
    };
}
pub(crate) use type_marker;
