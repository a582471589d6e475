use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ferry_types::Diagnose;

/// Everything the server and `ferry publish` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// `publish` was given a version that is already published for the class.
    #[error("version {version} is already published for device class {class}")]
    DuplicateVersion {
        /// Device class.
        class: String,
        /// Version.
        version: String,
    },
    /// A request or command named something that is not valid.
    #[error("{what} {value:?} is not valid: {why}")]
    Invalid {
        /// What it is (`device class`, `audience`, …).
        what: &'static str,
        /// The value given.
        value: String,
        /// Why.
        why: String,
    },
    /// The image to publish is not whole 4096-byte blocks.
    #[error("the image is {size} bytes, which is not a positive multiple of 4096")]
    ImageUnaligned {
        /// Its size.
        size: u64,
    },
    /// Not found.
    #[error("{0} was not found")]
    NotFound(String),
    /// A `Range` header that cannot be served.
    #[error("the requested range is outside the {size}-byte artifact")]
    RangeNotSatisfiable {
        /// The artifact's size.
        size: u64,
    },
    /// The database failed.
    #[error("the server database failed: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("the server database schema could not be brought up to date: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The artifact store failed.
    #[error("the artifact store failed: {0}")]
    Store(#[from] object_store::Error),
    /// `--store` names no store ferry can open.
    #[error("the artifact store {url:?} cannot be opened: {why}")]
    StoreUrl {
        /// The store URL as given (credentials in its query shown as `…`).
        url: String,
        /// Why.
        why: String,
    },
    /// Encoding the payload failed.
    #[error(transparent)]
    Payload(#[from] ferry_payload::PayloadError),
    /// Sealing the image failed (the seal crate's error; code `SEAL_FAILED` as ever, its fix).
    #[error("the image could not be sealed: {0}")]
    Seal(#[from] ferry_seal::SealError),
    /// Encoding a tailored delta failed (code `SEAL_FAILED`, as it always had).
    #[error("the image could not be sealed: encoding the delta failed: {0}")]
    DeltaEncode(#[source] ferry_delta::Error),
    /// The stored payload of an earlier release does not rebuild the image its digest names.
    #[error(
        "the image could not be sealed: the stored payload of release {version} does not rebuild its image"
    )]
    StoredImageMismatch {
        /// The earlier release.
        version: ferry_types::Version,
    },
    /// Building the chunked payload (chunk reuse) failed.
    #[error("the chunked payload could not be built: {0}")]
    Chunks(#[from] ferry_delta::Error),
    /// The chunked payload written is not the length its index gives.
    #[error(
        "the chunked payload could not be built: the chunk payload is {size} bytes where its index says {index_len}"
    )]
    ChunkPayloadMismatch {
        /// Bytes written.
        size: u64,
        /// Bytes the index describes.
        index_len: u64,
    },
    /// The catalog (TUF repository) could not be created, read or re-signed.
    #[error(transparent)]
    Catalog(#[from] ferry_catalog::CatalogError),
    /// The personalization service refused to sign (or to enroll).
    #[error(transparent)]
    Refused(#[from] ferry_personalize::Refusal),
    /// A device credential that does not verify.
    #[error(transparent)]
    Credential(#[from] ferry_personalize::CredentialError),
    /// A device request without a credential.
    #[error("the request carries no device credential (Authorization: Bearer)")]
    CredentialMissing,
    /// An admin request without the admin token.
    #[error("the request does not carry the server's admin token")]
    AdminTokenInvalid,
    /// An enrollment token that is unknown or spent.
    #[error("the enrollment token is unknown or was already used")]
    EnrollmentTokenInvalid,
    /// The enrollment token was made for another device id or class.
    #[error(
        "the enrollment token is bound to {}, not to device {device_id} of class {device_class}",
        bound_description(bound_device_id.as_deref(), bound_class.as_deref())
    )]
    EnrollmentTokenOtherDevice {
        /// The device that tried to enroll.
        device_id: ferry_types::DeviceId,
        /// Its class.
        device_class: String,
        /// The device id the token is bound to, if any.
        bound_device_id: Option<String>,
        /// The class the token is bound to, if any.
        bound_class: Option<String>,
    },
    /// Enrollment over a device that is already enrolled (or revoked), without an operator's
    /// re-enrollment token for it.
    #[error(
        "device {device_id} is already enrolled{}; enrolling again would replace its credential",
        if *revoked { " and revoked" } else { "" }
    )]
    DeviceAlreadyEnrolled {
        /// The device.
        device_id: ferry_types::DeviceId,
        /// Whether its enrollment is revoked.
        revoked: bool,
    },
    /// The server cannot take the request now.
    #[error("the server is overloaded: {cause}")]
    Overloaded {
        /// Why.
        cause: String,
    },
    /// Another process held the shared catalog's change lock for the whole wait.
    #[error(
        "the catalog in the shared store is being changed by {holder}, still after {waited_secs} s of waiting"
    )]
    CatalogBusy {
        /// The process holding the lock (`PID-RANDOM@HOST`).
        holder: String,
        /// Seconds waited.
        waited_secs: u64,
    },
    /// The CA, server certificate, online keys or admin token could not be made or read.
    #[error("the server's secrets are unusable: {cause}")]
    Secrets {
        /// What failed.
        cause: String,
    },
    /// A change to the personalization key set that is not allowed, or a stored set that
    /// cannot be read.
    #[error(transparent)]
    KeySet(#[from] ferry_personalize::KeySetError),
    /// The personalization key set on disk is not the one the catalog signs, or a key it
    /// names is missing: the server will not sign with a key devices would not trust.
    #[error("the personalization key set is not usable: {cause}")]
    KeySetUnusable {
        /// What is wrong.
        cause: String,
    },
    /// A rotated online key in the shared store cannot be opened by this replica.
    #[error("the shared online key {key} is not usable: {cause}")]
    SharedKeyUnusable {
        /// Its store key.
        key: String,
        /// What is wrong.
        cause: String,
    },
    /// The data directory has no catalog, and this command does not make one.
    #[error("{} holds no catalog (TUF repository)", metadata.display())]
    CatalogMissing {
        /// Where the catalog's metadata should be.
        metadata: std::path::PathBuf,
    },
    /// The catalog's offline root or targets key is in the data directory the server serves
    /// from: whoever takes the server could sign any release and rotate the root.
    #[error(
        "the catalog's offline keys are in the server's data directory ({})",
        files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    OfflineKeysOnServer {
        /// The key files found.
        files: Vec<std::path::PathBuf>,
    },
    /// An event batch or report the server refuses (REPORT_INVALID,
    /// REPORT_VERSION_UNSUPPORTED, REPORT_OTHER_DEVICE).
    #[error(transparent)]
    Report(#[from] ferry_events::ReportInvalid),
    /// A rollout request failed.
    #[error(transparent)]
    Rollout(#[from] crate::rollouts::RolloutError),
    /// A dashboard request was refused (sign-in, CSRF, role, users).
    #[error(transparent)]
    Dashboard(#[from] crate::dashboard::DashboardError),
    /// A device's deferral was refused.
    #[error(transparent)]
    Deferral(#[from] crate::rollouts::defer::DeferralError),
    /// A request body over the route's limit.
    #[error("the request body is larger than the {limit} bytes this route accepts")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Local I/O failed.
    #[error("I/O failed while {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Diagnose for ServerError {
    fn code(&self) -> &'static str {
        match self {
            ServerError::DuplicateVersion { .. } => "DUPLICATE_VERSION",
            ServerError::Invalid { .. } => "INVALID_ARGUMENT",
            ServerError::ImageUnaligned { .. } => "IMAGE_UNALIGNED",
            ServerError::NotFound(_) => "NOT_FOUND",
            ServerError::RangeNotSatisfiable { .. } => "RANGE_NOT_SATISFIABLE",
            ServerError::Database(_) | ServerError::Migrate(_) => "SERVER_DATABASE",
            ServerError::Store(_) => "SERVER_STORE",
            ServerError::StoreUrl { .. } => "STORE_URL_INVALID",
            ServerError::Payload(e) => e.code(),
            ServerError::Seal(_)
            | ServerError::DeltaEncode(_)
            | ServerError::StoredImageMismatch { .. } => "SEAL_FAILED",
            ServerError::Chunks(_) | ServerError::ChunkPayloadMismatch { .. } => "CHUNKS_FAILED",
            ServerError::Catalog(e) => e.code(),
            ServerError::Io { .. } => "SERVER_IO",
            ServerError::Refused(r) => r.code(),
            ServerError::Credential(e) => e.code(),
            ServerError::CredentialMissing => "CREDENTIAL_MISSING",
            ServerError::AdminTokenInvalid => "ADMIN_TOKEN_INVALID",
            ServerError::EnrollmentTokenInvalid => "ENROLLMENT_TOKEN_INVALID",
            ServerError::EnrollmentTokenOtherDevice { .. } => "ENROLLMENT_TOKEN_OTHER_DEVICE",
            ServerError::DeviceAlreadyEnrolled { .. } => "DEVICE_ALREADY_ENROLLED",
            ServerError::Overloaded { .. } => "OVERLOADED",
            ServerError::CatalogBusy { .. } => "CATALOG_BUSY",
            ServerError::Secrets { .. } => "SERVER_SECRETS",
            ServerError::KeySet(e) => e.code(),
            ServerError::KeySetUnusable { .. } => "KEYSET_UNUSABLE",
            ServerError::SharedKeyUnusable { .. } => "SHARED_KEY_UNUSABLE",
            ServerError::CatalogMissing { .. } => "CATALOG_MISSING",
            ServerError::OfflineKeysOnServer { .. } => "OFFLINE_KEYS_ON_SERVER",
            ServerError::Report(e) => e.code(),
            ServerError::Rollout(e) => e.code(),
            ServerError::Dashboard(e) => e.code(),
            ServerError::Deferral(e) => e.code(),
            ServerError::BodyTooLarge { .. } => "BODY_TOO_LARGE",
        }
    }

    fn fix(&self) -> String {
        match self {
            ServerError::DuplicateVersion { .. } => {
                "Publish under a new, higher version number (published versions never change)".into()
            }
            ServerError::Invalid { .. } => "Correct the value and run the command again".into(),
            ServerError::ImageUnaligned { .. } => {
                "Pad the image to whole blocks (truncate -s %4096 IMAGE) or build it with 4096-byte blocks".into()
            }
            ServerError::NotFound(_) => "Check the name against what GET /v1/releases?class=CLASS lists".into(),
            ServerError::RangeNotSatisfiable { .. } => "Ask for a range inside the artifact".into(),
            ServerError::Database(_) | ServerError::Migrate(_) => {
                "Check that the data directory is writable and not used by another ferry version".into()
            }
            ServerError::Store(_) => "Check that the artifact store is reachable and has space".into(),
            ServerError::StoreUrl { .. } => {
                "Pass --store DIR or --store s3://BUCKET?endpoint=URL&region=REGION, with the credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into()
            }
            ServerError::Payload(e) => e.fix(),
            ServerError::Seal(e) => e.fix(),
            ServerError::DeltaEncode(e) => e.fix(),
            ServerError::StoredImageMismatch { version } => format!(
                "Republish {version} (its stored payload is damaged), or publish without --delta-from {version}"
            ),
            ServerError::Chunks(e) => e.fix(),
            ServerError::ChunkPayloadMismatch { .. } => {
                "Check free space in DATA/tmp and publish again, or publish with --no-chunks".into()
            }
            ServerError::Catalog(e) => e.fix(),
            ServerError::Io { .. } => "Check the path, its permissions and free space".into(),
            ServerError::Refused(r) => r.fix(),
            ServerError::Credential(e) => e.fix(),
            ServerError::CredentialMissing => {
                "Enroll the device: ferry device init … --enroll-token TOKEN".into()
            }
            ServerError::AdminTokenInvalid => {
                "Send Authorization: Bearer with the token in the server's DIR/admin-token".into()
            }
            ServerError::EnrollmentTokenInvalid => {
                "Ask the administrator for a new token (ferry server token --data DIR)".into()
            }
            ServerError::EnrollmentTokenOtherDevice { .. } => {
                "Enroll the device the token was made for, or ask the administrator for a token for this device".into()
            }
            ServerError::DeviceAlreadyEnrolled { device_id, .. } => format!(
                "If this really is device {device_id} (repaired or reinstalled), ask the administrator for a re-enrollment token: ferry server token --data DIR --device {device_id} --reenroll"
            ),
            ServerError::Overloaded { .. } => "Try again in a moment".into(),
            ServerError::CatalogBusy { .. } => {
                "Run the command again once the other publish or key change has finished (a lock whose process died expires within two minutes)".into()
            }
            ServerError::Secrets { .. } => {
                "Check the files under the data directory's pki/ and keys-online/ (or remove them to make new ones, then give devices the new CA)".into()
            }
            ServerError::KeySet(e) => e.fix(),
            ServerError::Report(e) => e.fix(),
            ServerError::Rollout(e) => e.fix(),
            ServerError::Dashboard(e) => e.fix(),
            ServerError::Deferral(e) => e.fix(),
            ServerError::BodyTooLarge { .. } => {
                "Send smaller requests (a device sends at most 50 reports of 256 KiB per batch)".into()
            }
            ServerError::KeySetUnusable { .. } => {
                "Restore DATA/keys-online/personalization/ and DATA/tuf/targets/ from backup, or publish a new key with `ferry server personalization-key rotate --data DIR --keys OFFLINE_KEYS`".into()
            }
            ServerError::SharedKeyUnusable { .. } => {
                "Copy DATA/keys-online/credential.pk8 from the replica that rotated the key (every replica must share it), or copy the key file itself from its DATA/keys-online/".into()
            }
            ServerError::CatalogMissing { .. } => {
                "Create the catalog with `ferry server init --data DIR --keys OFFLINE_DIR` (OFFLINE_DIR on a machine or medium the server cannot reach), or start a development server with `ferry server --dev-keys`".into()
            }
            ServerError::OfflineKeysOnServer { .. } => {
                "Move DATA/keys-offline to offline storage and pass it to `ferry publish --keys DIR` when you publish, or start with `--dev-keys` for a development server".into()
            }
        }
    }
}

impl ServerError {
    fn status(&self) -> StatusCode {
        match self {
            ServerError::DuplicateVersion { .. } => StatusCode::CONFLICT,
            ServerError::Invalid { .. } | ServerError::ImageUnaligned { .. } => {
                StatusCode::BAD_REQUEST
            }
            ServerError::NotFound(_) => StatusCode::NOT_FOUND,
            ServerError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ServerError::Store(object_store::Error::NotFound { .. }) => StatusCode::NOT_FOUND,
            ServerError::Refused(r) => match r {
                ferry_personalize::Refusal::BadIdentity { .. }
                | ferry_personalize::Refusal::UnknownDevice { .. }
                | ferry_personalize::Refusal::RevokedDevice { .. } => StatusCode::FORBIDDEN,
                ferry_personalize::Refusal::NonceReused { .. } => StatusCode::CONFLICT,
                ferry_personalize::Refusal::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            },
            ServerError::Credential(_)
            | ServerError::CredentialMissing
            | ServerError::AdminTokenInvalid
            | ServerError::EnrollmentTokenInvalid => StatusCode::UNAUTHORIZED,
            ServerError::EnrollmentTokenOtherDevice { .. } => StatusCode::FORBIDDEN,
            ServerError::DeviceAlreadyEnrolled { .. } => StatusCode::CONFLICT,
            ServerError::Overloaded { .. } | ServerError::CatalogBusy { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ServerError::Report(ferry_events::ReportInvalid::OtherDevice { .. }) => {
                StatusCode::FORBIDDEN
            }
            ServerError::Report(_) => StatusCode::BAD_REQUEST,
            ServerError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServerError::Dashboard(e) => e.status(),
            ServerError::Deferral(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ServerError::Rollout(e) => match e {
                crate::rollouts::RolloutError::NotFound { .. }
                | crate::rollouts::RolloutError::EntitlementNotFound { .. } => {
                    StatusCode::NOT_FOUND
                }
                crate::rollouts::RolloutError::EntitlementRevoked { .. } => StatusCode::CONFLICT,
                crate::rollouts::RolloutError::Exists { .. }
                | crate::rollouts::RolloutError::WrongState { .. } => StatusCode::CONFLICT,
                _ => StatusCode::BAD_REQUEST,
            },
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

fn bound_description(device_id: Option<&str>, class: Option<&str>) -> String {
    match (device_id, class) {
        (Some(id), Some(class)) => format!("device {id} of class {class}"),
        (Some(id), None) => format!("device {id}"),
        (None, Some(class)) => format!("devices of class {class}"),
        (None, None) => "any device".into(),
    }
}

/// The one place errors become HTTP: status from the variant, body `{code, cause, fix}`.
/// Internal faults are logged with their detail and answered with their code only.
impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = crate::metrics::ErrorCode(self.code());
        if let ServerError::Refused(refusal) = &self {
            // Refusals carry their data: {code, cause, fix, data}.
            let mut response = (status, axum::Json(refusal)).into_response();
            response.extensions_mut().insert(code);
            return response;
        }
        let mut report = self.report();
        if status.is_server_error() {
            tracing::error!(code = report.code, error = %report.cause, "request failed");
            report.cause = "the server hit an internal error; its log has the detail".into();
        }
        let mut response = (status, axum::Json(report)).into_response();
        response.extensions_mut().insert(code);
        if let ServerError::RangeNotSatisfiable { size } = self
            && let Ok(v) = format!("bytes */{size}").parse()
        {
            response
                .headers_mut()
                .insert(axum::http::header::CONTENT_RANGE, v);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract every rendered error keeps ([`ferry_types::Report::breach`]).
    fn assert_contract(error: &ServerError) {
        assert_eq!(error.report().breach(), None);
    }

    /// Library errors keep their fix; their code is the library's, except where the server
    /// has always named the step (SEAL_FAILED, CHUNKS_FAILED), so scripts see the same codes.
    #[test]
    fn wrapped_library_errors_keep_their_fix_and_the_codes_scripts_know() {
        let seal = ferry_seal::SealError::ImageEmpty;
        let fix = seal.fix();
        let wrapped = ServerError::from(seal);
        assert_eq!(wrapped.code(), "SEAL_FAILED");
        assert_eq!(wrapped.fix(), fix);
        assert!(std::error::Error::source(&wrapped).is_some());
        let chunks = ServerError::from(ferry_delta::Error::IndexInvalid { detail: "d".into() });
        assert_eq!(chunks.code(), "CHUNKS_FAILED");
        let credential = ferry_personalize::CredentialError::Malformed { reason: "r".into() };
        let report = credential.report();
        let wrapped = ServerError::from(credential);
        assert_eq!(wrapped.report(), report);
        assert_eq!(wrapped.status(), StatusCode::UNAUTHORIZED);
        let refusal = ferry_personalize::Refusal::BadRequest { reason: "r".into() };
        assert_eq!(
            ServerError::from(refusal.clone()).report(),
            refusal.report()
        );
    }

    #[test]
    fn the_servers_own_errors_keep_the_contract() {
        let version: ferry_types::Version = "1.2".parse().unwrap();
        let errors = [
            ServerError::DuplicateVersion {
                class: "vm".into(),
                version: "1.2".into(),
            },
            ServerError::Invalid {
                what: "audience",
                value: "A".into(),
                why: "w".into(),
            },
            ServerError::ImageUnaligned { size: 1 },
            ServerError::NotFound("x".into()),
            ServerError::RangeNotSatisfiable { size: 1 },
            ServerError::Database(sqlx::Error::RowNotFound),
            ServerError::DeltaEncode(ferry_delta::Error::IndexInvalid { detail: "d".into() }),
            ServerError::StoredImageMismatch { version },
            ServerError::ChunkPayloadMismatch {
                size: 1,
                index_len: 2,
            },
            ServerError::CredentialMissing,
            ServerError::AdminTokenInvalid,
            ServerError::EnrollmentTokenInvalid,
            ServerError::Overloaded { cause: "c".into() },
            ServerError::CatalogBusy {
                holder: "1-2".into(),
                waited_secs: 3,
            },
            ServerError::EnrollmentTokenOtherDevice {
                device_id: ferry_types::DeviceId::new(7).unwrap(),
                device_class: "vm".into(),
                bound_device_id: Some("0000000000000008".into()),
                bound_class: None,
            },
            ServerError::DeviceAlreadyEnrolled {
                device_id: ferry_types::DeviceId::new(7).unwrap(),
                revoked: true,
            },
            ServerError::Secrets { cause: "c".into() },
            ServerError::KeySetUnusable { cause: "c".into() },
            ServerError::SharedKeyUnusable {
                key: "k".into(),
                cause: "c".into(),
            },
            ServerError::CatalogMissing {
                metadata: "d/tuf/metadata".into(),
            },
            ServerError::OfflineKeysOnServer {
                files: vec!["d/keys-offline/root.pk8".into()],
            },
            ServerError::BodyTooLarge { limit: 1 },
            ServerError::StoreUrl {
                url: "s3://".into(),
                why: "w".into(),
            },
            ServerError::Report(ferry_events::ReportInvalid::Batch { why: "w".into() }),
            ServerError::Io {
                op: "reading",
                source: std::io::Error::other("x"),
            },
        ];
        for error in &errors {
            assert_contract(error);
        }
        let codes: Vec<&str> = errors.iter().map(Diagnose::code).collect();
        assert_eq!(
            codes[6..12],
            [
                "SEAL_FAILED",
                "SEAL_FAILED",
                "CHUNKS_FAILED",
                "CREDENTIAL_MISSING",
                "ADMIN_TOKEN_INVALID",
                "ENROLLMENT_TOKEN_INVALID"
            ]
        );
    }
}
