//! Who a device is: `identity.json` on the device, the identity a ticket is bound to, the
//! enrollment the server records. One type for all three.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{DeviceId, Diagnose};

/// Longest device class, in bytes.
pub const MAX_DEVICE_CLASS_LEN: usize = 64;

/// A device's identity as it reads it from its hardware.
///
/// Board and chip ids are written as 8 lowercase hex digits (reading also takes 1 to 8
/// digits with an optional `0x`, as older `identity.json` files have them). Deserializing
/// refuses an all-zero device id like [`DeviceId`] does; the ticket and enrollment requests
/// read it with [`Identity::deserialize_allowing_zero`] so the service can answer
/// `BAD_IDENTITY` (see [`Identity::zero_fields`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "IdentityFields")]
pub struct Identity {
    /// 64-bit device id, 16 hex digits.
    pub device_id: DeviceId,
    /// Board id, 8 hex digits.
    #[serde(serialize_with = "hex_u32::serialize")]
    pub board_id: u32,
    /// Chip id, 8 hex digits.
    #[serde(serialize_with = "hex_u32::serialize")]
    pub chip_id: u32,
    /// Hardware UUID (`8-4-4-4-12` form).
    pub hardware_uuid: uuid::Uuid,
    /// The device class offers are chosen for.
    pub device_class: DeviceClass,
}

/// The wire form, zero device id included; [`Identity`]'s own `Deserialize` then refuses it.
#[derive(Deserialize)]
struct IdentityFields {
    #[serde(deserialize_with = "DeviceId::deserialize_allowing_zero")]
    device_id: DeviceId,
    #[serde(deserialize_with = "hex_u32::deserialize")]
    board_id: u32,
    #[serde(deserialize_with = "hex_u32::deserialize")]
    chip_id: u32,
    hardware_uuid: uuid::Uuid,
    device_class: DeviceClass,
}

impl IdentityFields {
    fn into_identity(self) -> Identity {
        Identity {
            device_id: self.device_id,
            board_id: self.board_id,
            chip_id: self.chip_id,
            hardware_uuid: self.hardware_uuid,
            device_class: self.device_class,
        }
    }
}

impl TryFrom<IdentityFields> for Identity {
    type Error = crate::IdError;
    fn try_from(fields: IdentityFields) -> Result<Identity, crate::IdError> {
        if fields.device_id.is_zero() {
            return Err(crate::IdError::AllZero);
        }
        Ok(fields.into_identity())
    }
}

impl Identity {
    /// serde `deserialize_with` for the ticket and enrollment requests only: an all-zero
    /// device id passes, so the service can refuse it with `BAD_IDENTITY` rather than a
    /// parse error.
    pub fn deserialize_allowing_zero<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IdentityFields::deserialize(d).map(IdentityFields::into_identity)
    }

    /// The fields that read as all zero (`device_id`, `board_id`, `chip_id`,
    /// `hardware_uuid`, in that order): a hardware fault, the ids could not be read.
    pub fn zero_fields(&self) -> Vec<&'static str> {
        let mut zero_fields = Vec::new();
        if self.device_id.is_zero() {
            zero_fields.push("device_id");
        }
        if self.board_id == 0 {
            zero_fields.push("board_id");
        }
        if self.chip_id == 0 {
            zero_fields.push("chip_id");
        }
        if self.hardware_uuid.is_nil() {
            zero_fields.push("hardware_uuid");
        }
        zero_fields
    }
}

/// serde for a `u32` hardware id written as 8 lowercase hex digits.
mod hex_u32 {
    use super::*;

    pub fn serialize<S: Serializer>(value: &u32, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{value:08x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let digits = text.strip_prefix("0x").unwrap_or(&text);
        if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(serde::de::Error::custom(format!(
                "hardware id {text:?} is not 1 to 8 hex digits"
            )));
        }
        u32::from_str_radix(digits, 16).map_err(serde::de::Error::custom)
    }
}

/// A device class (`"edge-gateway"`): 1 to [`MAX_DEVICE_CLASS_LEN`] bytes, no control
/// characters (it is signed inside tickets, as canonical JSON).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceClass(String);

/// A device class that is empty, too long or has control characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("device class {text:?} is not valid: {why}")]
pub struct DeviceClassError {
    text: String,
    why: &'static str,
}

impl Diagnose for DeviceClassError {
    fn code(&self) -> &'static str {
        "DEVICE_CLASS_INVALID"
    }
    fn fix(&self) -> String {
        "Name the device class with 1 to 64 bytes and no control characters, such as edge-gateway"
            .into()
    }
}

impl DeviceClass {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DeviceClass {
    type Error = DeviceClassError;
    fn try_from(text: String) -> Result<Self, DeviceClassError> {
        let err = |why| DeviceClassError {
            text: text.chars().take(80).collect(),
            why,
        };
        if text.is_empty() {
            return Err(err("it is empty"));
        }
        if text.len() > MAX_DEVICE_CLASS_LEN {
            return Err(err("it is longer than 64 bytes"));
        }
        if text.chars().any(char::is_control) {
            return Err(err("it contains control characters"));
        }
        Ok(DeviceClass(text))
    }
}

impl std::str::FromStr for DeviceClass {
    type Err = DeviceClassError;
    fn from_str(text: &str) -> Result<Self, DeviceClassError> {
        DeviceClass::try_from(text.to_owned())
    }
}

impl From<DeviceClass> for String {
    fn from(value: DeviceClass) -> String {
        value.0
    }
}

impl std::fmt::Display for DeviceClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for DeviceClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceClass({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{"device_id":"00000000000004d2","board_id":"000000a1",
        "chip_id":"00008103","hardware_uuid":"5b0c2f8e-8e0c-4a59-9a57-0d2b8b1f4a10",
        "device_class":"gateway"}"#;

    #[test]
    fn round_trips_in_the_wire_form_and_reads_older_spellings() {
        let identity: Identity = serde_json::from_str(JSON).unwrap();
        assert_eq!(identity.board_id, 0xa1);
        assert_eq!(identity.device_class.as_str(), "gateway");
        let written = serde_json::to_value(&identity).unwrap();
        assert_eq!(written["board_id"], "000000a1");
        assert_eq!(written["chip_id"], "00008103");
        assert_eq!(written["device_id"], "00000000000004d2");
        let older = JSON.replace("\"000000a1\"", "\"0x00a1\"");
        assert_eq!(serde_json::from_str::<Identity>(&older).unwrap(), identity);
        assert!(identity.zero_fields().is_empty());
        for bad in ["\"0x\"", "\"123456789\"", "\"zz\""] {
            let json = JSON.replace("\"000000a1\"", bad);
            assert!(serde_json::from_str::<Identity>(&json).is_err(), "{bad}");
        }
    }

    #[test]
    fn zero_device_id_only_through_the_ticket_request_path() {
        let zero = JSON
            .replace("00000000000004d2", "0000000000000000")
            .replace("000000a1", "00000000")
            .replace(
                "5b0c2f8e-8e0c-4a59-9a57-0d2b8b1f4a10",
                "00000000-0000-0000-0000-000000000000",
            );
        assert!(serde_json::from_str::<Identity>(&zero).is_err());
        let mut de = serde_json::Deserializer::from_str(&zero);
        let identity = Identity::deserialize_allowing_zero(&mut de).unwrap();
        assert_eq!(
            identity.zero_fields(),
            ["device_id", "board_id", "hardware_uuid"]
        );
    }

    #[test]
    fn device_class_rules() {
        assert!("edge-gateway".parse::<DeviceClass>().is_ok());
        for bad in [String::new(), "x".repeat(65), "a\nb".to_owned()] {
            let error = bad.parse::<DeviceClass>().expect_err(&bad);
            assert_eq!(error.code(), "DEVICE_CLASS_INVALID");
        }
        assert!(serde_json::from_str::<DeviceClass>("\"\"").is_err());
    }
}
