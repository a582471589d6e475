//! `ferry device init`: makes a device directory from nothing (identity, config, slot A
//! with the factory image and its seal, slot B empty, boot control with A good and
//! primary, the pinned root and CA, the factory receipt). Opening a device that exists
//! is [`crate::device`].

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::Utc;
use ferry_boot::{BootBackend, BootState, Slot};
use ferry_types::{DeviceClass, DeviceId, Identity, Sha256, Sha256Hasher, Version};

use crate::AgentError;
use crate::device::{self, Config, Device, PayloadKind, Receipt, SlotInfo, SlotSeal, SlotsConfig};
use crate::layout::{self, Layout};

/// What `device init` needs.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Device class.
    pub class: String,
    /// Image for slot A.
    pub image: PathBuf,
    /// Its version.
    pub version: Version,
    /// Update server URL.
    pub server: String,
    /// Audience.
    pub audience: String,
    /// Slot capacity; default: twice the image, at least 64 MiB.
    pub slot_size: Option<u64>,
    /// Boot backend.
    pub boot: BootBackend,
    /// Health checks run at boot before a new slot is committed.
    pub health_checks: Vec<String>,
    /// The catalog's root metadata to pin (`tuf/root.json`): the device trusts only the
    /// catalog this root signs for.
    pub root: Vec<u8>,
    /// The server's CA certificate (PEM file) to pin, copied into `trust/ca.pem`.
    pub ca: Option<PathBuf>,
}

/// Makes a simulated device: identity, config, slots A (with the image) and B (empty),
/// boot state (A good and primary), and a receipt for the installed image.
pub fn init(dir: &Path, opts: &InitOptions) -> Result<Identity, AgentError> {
    if dir.exists()
        && fs::read_dir(dir)
            .map_err(AgentError::io("reading", dir))?
            .next()
            .is_some()
    {
        return Err(AgentError::DeviceExists {
            dir: dir.to_owned(),
        });
    }
    let layout = Layout::new(dir);
    let device_class: DeviceClass = opts.class.parse()?;
    let image_len = fs::metadata(&opts.image)
        .map_err(AgentError::io("reading the image", &opts.image))?
        .len();
    let capacity = opts
        .slot_size
        .unwrap_or_else(|| (image_len * 2).max(64 << 20).div_ceil(1 << 20) << 20);
    if image_len > capacity {
        return Err(AgentError::SlotTooSmall {
            slot: Slot::A.to_string(),
            needed: image_len,
            capacity,
        });
    }
    for sub in layout::DIRS {
        let path = layout.resolve(Path::new(sub));
        fs::create_dir_all(&path).map_err(AgentError::io("creating the device directory", path))?;
    }
    let identity = Identity {
        device_id: DeviceId::random(),
        board_id: u32::from(rand::random::<u16>() | 1),
        chip_id: u32::from(0x8000 | rand::random::<u16>()),
        hardware_uuid: uuid::Uuid::new_v4(),
        device_class,
    };
    let config = Config {
        server: opts.server.trim_end_matches('/').to_owned(),
        audience: opts.audience.clone(),
        check_interval_secs: device::default_check_interval(),
        boot_tries: device::default_tries(),
        slots: SlotsConfig {
            a: layout::default_slot_image(Slot::A),
            b: layout::default_slot_image(Slot::B),
            capacity,
        },
        boot: opts.boot.clone(),
        health_checks: opts.health_checks.clone(),
        ca: opts.ca.as_ref().map(|_| layout::ca_pin()),
        clock_offset_secs: 0,
        read_timeout_secs: device::default_read_timeout(),
        stream_min_rate: device::default_stream_min_rate(),
        download_retries: device::default_download_retries(),
        cache: None,
        policy: Default::default(),
        outbox_max_reports: None,
        post_commit_watch: None,
        post_commit_check_every: None,
    };
    if let Some(ca) = &opts.ca {
        let pem = fs::read(ca).map_err(AgentError::io("reading the CA to pin", ca))?;
        let trust = layout.trust_dir();
        fs::create_dir_all(&trust).map_err(AgentError::io("creating trust/", &trust))?;
        let pinned = layout.resolve(&layout::ca_pin());
        ferry_durable::write_atomic(&pinned, &pem)
            .map_err(AgentError::io("pinning the CA", &pinned))?;
    }
    let a = layout.resolve(&config.slots.a);
    let b = layout.resolve(&config.slots.b);
    let image_sha256 = copy_and_hash(&opts.image, &a)?;
    File::create(&b)
        .and_then(|f| f.set_len(capacity))
        .map_err(AgentError::io("creating slot b", &b))?;
    OpenOptions::new()
        .write(true)
        .open(&a)
        .and_then(|f| {
            f.set_len(capacity)?;
            f.sync_all()
        })
        .map_err(AgentError::io("sizing slot a", &a))?;

    let id_path = layout.identity();
    ferry_durable::write_json(&id_path, &identity)
        .map_err(AgentError::io("writing the identity", &id_path))?;
    crate::trust::catalog::pin_root(dir, &opts.root)?;
    device::write_config(&layout.config(), &config)?;
    let device = Device::open(dir)?;
    // A U-Boot environment must exist (with two copies) before boot state is stored in it.
    ferry_boot::prepare(&device.config.boot, &layout.boot_dir())?;
    device.boot_control().store(&BootState::new(Slot::A))?;
    let tree = layout::slot_tree(Slot::A);
    let seal = crate::install::seal::seal_existing(&a, image_len, &layout.resolve(&tree))?;
    let seal = SlotSeal { tree, ..seal };
    let now = Utc::now();
    let build_id = format!("{}-{}", opts.version, &image_sha256.to_hex()[..8]);
    let receipt = Receipt {
        component: "system".into(),
        version: opts.version.clone(),
        build_id: build_id.clone(),
        slot: Slot::A,
        image_sha256,
        image_size: image_len,
        payload_kind: PayloadKind::Factory,
        payload_sha256: image_sha256,
        payload_size: image_len,
        bytes_downloaded: 0,
        bytes_reused: 0,
        fallback: None,
        fallback_from: None,
        installed_at: now,
        from_version: None,
        update_id: None,
    };
    let receipt_name = device.write_receipt(&receipt)?;
    device.set_slot_info(
        Slot::A,
        Some(&SlotInfo {
            version: opts.version.clone(),
            build_id,
            image_size: image_len,
            image_sha256,
            installed_at: now,
            receipt: receipt_name,
            seal: Some(seal),
        }),
    )?;
    Ok(identity)
}

fn copy_and_hash(from: &Path, to: &Path) -> Result<Sha256, AgentError> {
    let mut src = File::open(from).map_err(AgentError::io("opening the image", from))?;
    let mut dst = File::create(to).map_err(AgentError::io("creating slot a", to))?;
    let mut h = Sha256Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src
            .read(&mut buf)
            .map_err(AgentError::io("reading the image", from))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        std::io::Write::write_all(&mut dst, &buf[..n])
            .map_err(AgentError::io("writing slot a", to))?;
    }
    dst.sync_all()
        .map_err(AgentError::io("syncing slot a", to))?;
    Ok(h.finish())
}
