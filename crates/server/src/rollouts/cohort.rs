//! Which devices a rollout's cohort or an entitlement covers, no I/O: a selector
//! (`tenant:acme,region:eu,tag:beta`, `audience:customer`, `device:51000000000012e0`, or
//! `all`) matched against what the server knows of a device ([`DeviceFacts`]: the
//! operator's tenant, region and tags, the audience the device last reported).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use ferry_types::DeviceId;
use serde::{Deserialize, Serialize};

use super::RolloutError;

/// What a selector looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// The operator's tenant of the device.
    Tenant,
    /// The operator's region of the device.
    Region,
    /// One of the operator's tags (a programme such as `beta` is a tag).
    Tag,
    /// The audience the device last reported.
    Audience,
    /// One device.
    Device,
}

impl Key {
    fn as_str(self) -> &'static str {
        match self {
            Key::Tenant => "tenant",
            Key::Region => "region",
            Key::Tag => "tag",
            Key::Audience => "audience",
            Key::Device => "device",
        }
    }
}

/// A set of devices: every term must match (`all`: no term, every device).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector(Vec<(Key, String)>);

/// What the server knows of a device that selectors match against.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeviceFacts {
    /// The device.
    pub device_id: Option<DeviceId>,
    /// Its tenant (operator's).
    pub tenant: Option<String>,
    /// Its region (operator's).
    pub region: Option<String>,
    /// Its tags (operator's).
    pub tags: BTreeSet<String>,
    /// The audience it last reported.
    pub audience: Option<String>,
}

impl Selector {
    /// Every device.
    pub fn all() -> Selector {
        Selector(Vec::new())
    }

    /// Only devices that reported `audience`.
    pub fn audience(audience: &str) -> Selector {
        Selector(vec![(Key::Audience, audience.to_owned())])
    }

    /// Whether it selects every device.
    pub fn is_all(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a term looks at the reported audience (the server then looks it up).
    pub fn needs_audience(&self) -> bool {
        self.0.iter().any(|(k, _)| *k == Key::Audience)
    }

    /// Whether the device is in the set.
    pub fn matches(&self, device: &DeviceFacts) -> bool {
        self.0.iter().all(|(key, value)| match key {
            Key::Tenant => device.tenant.as_deref() == Some(value.as_str()),
            Key::Region => device.region.as_deref() == Some(value.as_str()),
            Key::Tag => device.tags.contains(value),
            Key::Audience => device.audience.as_deref() == Some(value.as_str()),
            Key::Device => device.device_id.map(|d| d.to_string()).as_deref() == Some(value),
        })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("all");
        }
        let terms: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| format!("{}:{v}", k.as_str()))
            .collect();
        f.write_str(&terms.join(","))
    }
}

/// A tenant, region, tag or audience value: letters, digits, `-`, `_`, `.`, 1–64 bytes.
pub fn valid_word(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl FromStr for Selector {
    type Err = RolloutError;

    fn from_str(spec: &str) -> Result<Selector, RolloutError> {
        let invalid = |why: String| RolloutError::CohortInvalid {
            spec: spec.to_owned(),
            why,
        };
        let spec = spec.trim();
        if spec == "all" {
            return Ok(Selector::all());
        }
        let mut terms = Vec::new();
        for part in spec.split(',').map(str::trim) {
            let (key, value) = part
                .split_once(':')
                .ok_or_else(|| invalid(format!("{part:?} is not KEY:VALUE")))?;
            let key = match key {
                "tenant" => Key::Tenant,
                "region" => Key::Region,
                "tag" | "programme" | "program" => Key::Tag,
                "audience" => Key::Audience,
                "device" => Key::Device,
                _ => {
                    return Err(invalid(format!(
                        "{key:?} is not one of tenant, region, tag, programme, audience, device"
                    )));
                }
            };
            let value = if key == Key::Device {
                value
                    .parse::<DeviceId>()
                    .map_err(|e| invalid(format!("{value:?}: {e}")))?
                    .to_string()
            } else if valid_word(value) {
                value.to_owned()
            } else {
                return Err(invalid(format!(
                    "{value:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
                )));
            };
            if !terms.contains(&(key, value.clone())) {
                terms.push((key, value));
            }
        }
        terms.sort();
        Ok(Selector(terms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(tenant: &str, region: &str, tags: &[&str], audience: &str) -> DeviceFacts {
        DeviceFacts {
            device_id: Some(DeviceId::new(0x51).unwrap()),
            tenant: Some(tenant.into()),
            region: Some(region.into()),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            audience: Some(audience.into()),
        }
    }

    #[test]
    fn every_term_must_match() {
        let s: Selector = "tag:beta,region:eu,tenant:acme".parse().unwrap();
        assert_eq!(s.to_string(), "tenant:acme,region:eu,tag:beta");
        assert!(s.matches(&device("acme", "eu", &["beta", "kiosk"], "customer")));
        assert!(!s.matches(&device("acme", "us", &["beta"], "customer")));
        assert!(!s.matches(&device("acme", "eu", &["kiosk"], "customer")));
        assert!(!s.matches(&device("other", "eu", &["beta"], "customer")));
        assert!(!s.matches(&DeviceFacts::default()));
        let a: Selector = "audience:seed".parse().unwrap();
        assert!(a.needs_audience() && !s.needs_audience());
        assert!(a.matches(&device("x", "y", &[], "seed")));
        assert!(!a.matches(&device("x", "y", &[], "customer")));
        let one: Selector = "device:0000000000000051".parse().unwrap();
        assert!(one.matches(&device("x", "y", &[], "seed")));
        let all: Selector = "all".parse().unwrap();
        assert!(all.is_all() && all.matches(&DeviceFacts::default()));
        assert_eq!(
            "programme:beta".parse::<Selector>().unwrap().to_string(),
            "tag:beta"
        );
    }

    #[test]
    fn bad_selectors_are_refused_with_why() {
        for (spec, why) in [
            ("", "KEY:VALUE"),
            ("colour:red", "not one of"),
            ("tag:", "1 to 64"),
            ("tag:a b", "1 to 64"),
            ("device:xyz", "\"xyz\""),
        ] {
            let e = spec.parse::<Selector>().unwrap_err();
            assert!(e.to_string().contains(why), "{spec}: {e}");
            assert_eq!(ferry_types::Diagnose::code(&e), "ROLLOUT_COHORT_INVALID");
        }
    }
}
