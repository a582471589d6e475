//! The signing rules: a pure function from a request, the time and what the server knows to a
//! ticket or a refusal.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_types::Identity;

use crate::refusal::Refusal;
use crate::ticket::{TicketRequest, UnsignedTicket};
use crate::types::Component;

/// Limits the signing rules apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Largest accepted difference between the device's clock and the server's (default
    /// 60 s). A device with a wrong clock cannot check expiry of catalog metadata, so it is
    /// told to fix its clock before it installs anything.
    pub clock_skew_limit: Duration,
    /// Most components one ticket may cover (default 16); more is `BAD_REQUEST`.
    pub max_components: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            clock_skew_limit: Duration::from_secs(60),
            max_components: 16,
        }
    }
}

/// What the server's database says about a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    /// No enrollment for this device id.
    Unknown,
    /// Enrolled and in good standing.
    Enrolled,
    /// Enrolled, then revoked.
    Revoked,
}

/// What the server looked up before deciding; the rules themselves do no I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The device's enrollment.
    pub device: DeviceStatus,
    /// Whether the build's signing window is open for the device's class.
    pub window_open: bool,
    /// The components (name and seal root hash) the build published for the device's class:
    /// a ticket covers only these, so an open build's name cannot carry another image.
    pub published: Vec<Component>,
    /// Whether this nonce's hash was recorded before.
    pub nonce_seen: bool,
    /// Whether the device is over its request rate.
    pub rate_limited: bool,
    /// Why a rollout the release is under holds this device back, if it does (the server
    /// computes it from the rollout's waves and state; `None`: no rollout, or an open wave).
    pub rollout: Option<RolloutHold>,
}

impl Facts {
    /// The facts under which the rules sign a request for `published`: an enrolled device,
    /// an open window, a new nonce, under its rate, no rollout holding it back (examples,
    /// benchmarks and tests start from these and change one).
    pub fn allowing(published: Vec<Component>) -> Facts {
        Facts {
            device: DeviceStatus::Enrolled,
            window_open: true,
            published,
            nonce_seen: false,
            rate_limited: false,
            rollout: None,
        }
    }
}

/// Why a rollout holds a device back from a release (see [`Facts::rollout`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutHold {
    /// The device's wave has not opened yet.
    NotYet {
        /// The rollout.
        rollout_id: i64,
        /// The device's wave (0-based).
        wave: u32,
        /// When the wave opens, if the rollout keeps running.
        opens_at: DateTime<Utc>,
    },
    /// The rollout is paused by an operator.
    Paused {
        /// The rollout.
        rollout_id: i64,
    },
    /// The rollout is halted (by an operator or by the halt rule).
    Halted {
        /// The rollout.
        rollout_id: i64,
    },
    /// The device is outside the rollout's cohort.
    NotInCohort {
        /// The rollout.
        rollout_id: i64,
        /// The cohort (`tenant:acme,region:eu,tag:beta`, …).
        cohort: String,
    },
    /// No unrevoked entitlement of the release covers the device (checked before the
    /// rollout's own holds).
    NotEntitled,
}

impl Policy {
    /// Decides whether to sign, checking in this order and refusing at the first failure:
    ///
    /// 1. `BAD_REQUEST`: no components, more than `max_components`, or a name twice;
    /// 2. `BAD_IDENTITY`: all-zero device id, board id, chip id or hardware UUID;
    /// 3. `UNKNOWN_DEVICE`, 4. `REVOKED_DEVICE`: the enrollment;
    /// 5. `RATE_LIMITED`;
    /// 6. `CLOCK_SKEW`: `|device_time - now| > clock_skew_limit`;
    /// 7. `NOT_SIGNED`: the build's signing window is closed for the class;
    /// 8. `IMAGE_NOT_PUBLISHED`: a component's root hash is not one the build published;
    /// 9. `NOT_ENTITLED`, `ROLLOUT_NOT_IN_COHORT`, `ROLLOUT_HALTED`, `ROLLOUT_PAUSED`, `ROLLOUT_NOT_YET`: a
    ///    no entitlement covers the device, or a rollout of the release holds it back;
    /// 10. `NONCE_REUSED`.
    ///
    /// Identity comes before enrollment so a hardware fault is never reported as "not
    /// enrolled"; the nonce comes last so a refused request does not burn its nonce (the
    /// server records the nonce only when this returns `Ok`).
    pub fn decide(
        &self,
        request: &TicketRequest,
        now: DateTime<Utc>,
        facts: &Facts,
    ) -> Result<UnsignedTicket, Refusal> {
        check_components(request, self.max_components)?;
        check_identity(&request.identity)?;
        let device_id = request.identity.device_id;
        match facts.device {
            DeviceStatus::Unknown => return Err(Refusal::UnknownDevice { device_id }),
            DeviceStatus::Revoked => return Err(Refusal::RevokedDevice { device_id }),
            DeviceStatus::Enrolled => {}
        }
        if facts.rate_limited {
            return Err(Refusal::RateLimited { device_id });
        }
        let skew = request.device_time.signed_duration_since(now);
        let limit =
            chrono::Duration::from_std(self.clock_skew_limit).unwrap_or(chrono::Duration::MAX);
        if skew.abs() > limit {
            return Err(Refusal::ClockSkew {
                device_time: request.device_time,
                server_time: now,
                skew_seconds: skew.num_seconds(),
                limit_seconds: self.clock_skew_limit.as_secs(),
            });
        }
        if !facts.window_open {
            return Err(Refusal::NotSigned {
                build_id: request.build_id.clone(),
                device_class: request.identity.device_class.clone(),
            });
        }
        if let Some(component) = request
            .components
            .iter()
            .find(|component| !facts.published.contains(component))
        {
            return Err(Refusal::ImageNotPublished {
                build_id: request.build_id.clone(),
                device_class: request.identity.device_class.clone(),
                component: component.name.clone(),
                root_hash: component.root_hash,
            });
        }
        if let Some(hold) = &facts.rollout {
            return Err(rollout_refusal(request, hold));
        }
        let nonce_sha256 = request.nonce.sha256();
        if facts.nonce_seen {
            return Err(Refusal::NonceReused { nonce_sha256 });
        }
        Ok(UnsignedTicket {
            identity: request.identity.clone(),
            nonce_sha256,
            build_id: request.build_id.clone(),
            components: request.components.clone(),
            issued_at: now,
        })
    }
}

fn rollout_refusal(request: &TicketRequest, hold: &RolloutHold) -> Refusal {
    let build_id = request.build_id.clone();
    match hold.clone() {
        RolloutHold::NotYet {
            rollout_id,
            wave,
            opens_at,
        } => Refusal::RolloutNotYet {
            build_id,
            rollout_id,
            wave,
            opens_at,
        },
        RolloutHold::Paused { rollout_id } => Refusal::RolloutPaused {
            build_id,
            rollout_id,
        },
        RolloutHold::Halted { rollout_id } => Refusal::RolloutHalted {
            build_id,
            rollout_id,
        },
        RolloutHold::NotInCohort { rollout_id, cohort } => Refusal::RolloutNotInCohort {
            build_id,
            rollout_id,
            cohort,
        },
        RolloutHold::NotEntitled => Refusal::NotEntitled {
            build_id,
            device_class: request.identity.device_class.clone(),
            device_id: request.identity.device_id,
        },
    }
}

/// Refuses an identity whose device id, board id, chip id or hardware UUID is all zero: a
/// hardware fault (the ids could not be read), reported as `BAD_IDENTITY`. The signing rules
/// run it; the server runs it at enrollment too.
pub fn check_identity(identity: &Identity) -> Result<(), Refusal> {
    let zero_fields = identity.zero_fields();
    if zero_fields.is_empty() {
        return Ok(());
    }
    Err(Refusal::BadIdentity {
        device_id: identity.device_id,
        zero_fields: zero_fields.into_iter().map(str::to_owned).collect(),
    })
}

fn check_components(request: &TicketRequest, max_components: usize) -> Result<(), Refusal> {
    if request.components.is_empty() {
        return Err(Refusal::BadRequest {
            reason: "the request names no component".to_owned(),
        });
    }
    if request.components.len() > max_components {
        return Err(Refusal::BadRequest {
            reason: format!(
                "the request names {} components, more than the limit of {max_components}",
                request.components.len()
            ),
        });
    }
    let mut names = HashSet::new();
    for component in &request.components {
        if !names.insert(&component.name) {
            return Err(Refusal::BadRequest {
                reason: format!("component {} is named twice", component.name),
            });
        }
    }
    Ok(())
}
