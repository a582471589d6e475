//! System images for the demo and tests: an ext4 filesystem built from a generated
//! file tree with `mke2fs -d` when e2fsprogs is installed, else a deterministic
//! binary image. Version `n + 1` changes a slice of version `n`'s files, as a real
//! OS update does, so deltas and chunk reuse have something to find.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A small deterministic PRNG (xorshift64*): demo content must be the same on every
/// machine, and this is all it needs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const WORDS: &[&str] = &[
    "kernel", "module", "service", "network", "daemon", "config", "socket", "mount", "device",
    "update", "slot", "verity", "journal", "systemd", "libc", "python", "openssh", "curl",
    "package", "version", "security", "patch",
];

fn text(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        out.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
        out.push(if rng.below(9) == 0 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

fn binary(rng: &mut Rng, len: usize) -> Vec<u8> {
    // Half random, half structured: compresses about as well as executables do.
    (0..len)
        .map(|i| {
            if (i / 64) % 2 == 0 {
                rng.next() as u8
            } else {
                (i % 251) as u8
            }
        })
        .collect()
}

/// Writes the file tree of version `n` (1-based) into `root`.
fn write_tree(root: &Path, n: u32, budget: usize) -> std::io::Result<()> {
    let mut rng = Rng(0x00C0_FFEE_u64 ^ 0x9E37_79B9);
    let mut written = 0;
    let mut idx = 0u32;
    while written < budget {
        let dir = root.join(["usr/bin", "usr/lib", "usr/share/doc", "etc"][(idx % 4) as usize]);
        fs::create_dir_all(&dir)?;
        let size = 2048 + rng.below(96 * 1024) as usize;
        let mut content = if idx.is_multiple_of(3) {
            binary(&mut rng, size)
        } else {
            text(&mut rng, size)
        };
        // Each later version rewrites about one file in twelve and grows a few.
        for v in 2..=n {
            if (idx.wrapping_mul(2_654_435_761).wrapping_add(v)) % 12 == 0 {
                let mut vr = Rng(u64::from(idx) << 8 | u64::from(v));
                let start = vr.below(content.len() as u64) as usize;
                let end = (start + 4096).min(content.len());
                let fresh = text(&mut vr, end - start);
                content[start..end].copy_from_slice(&fresh);
                content.extend_from_slice(&text(&mut vr, 1024));
            }
        }
        written += content.len();
        fs::write(dir.join(format!("file{idx:05}")), content)?;
        idx += 1;
    }
    fs::create_dir_all(root.join("etc"))?;
    fs::write(
        root.join("etc/os-release"),
        format!("NAME=ferry-demo\nVERSION_ID={n}.0\n"),
    )?;
    Ok(())
}

fn mke2fs() -> Option<PathBuf> {
    ["/usr/sbin/mke2fs", "/sbin/mke2fs"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Makes image version `n` of `size_mib` MiB at `out`, returning how it was built.
pub fn make(out: &Path, n: u32, size_mib: u64) -> std::io::Result<&'static str> {
    let size = size_mib << 20;
    let budget = (size / 3) as usize;
    if let Some(mke2fs) = mke2fs() {
        let tree = out.with_extension("tree");
        let _ = fs::remove_dir_all(&tree);
        write_tree(&tree, n, budget)?;
        let _ = fs::remove_file(out);
        let status = Command::new(mke2fs)
            .env("E2FSPROGS_FAKE_TIME", "1700000000")
            .args([
                "-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0", "-L", "rootfs",
            ])
            .args(["-U", "00000000-0000-0000-0000-0000000000f1"])
            .args([
                "-E",
                "root_owner=0:0,hash_seed=00000000-0000-0000-0000-0000000000f2,nodiscard",
            ])
            .args(["-O", "^has_journal,^metadata_csum_seed", "-d"])
            .arg(&tree)
            .arg(out)
            .arg(format!("{size_mib}M"))
            .stdout(std::process::Stdio::null())
            .status()?;
        fs::remove_dir_all(&tree)?;
        if status.success() {
            return Ok("ext4 (mke2fs -d)");
        }
    }
    // No e2fsprogs: a deterministic block image with the same kind of change between versions.
    let mut rng = Rng(0xF0E1_D2C3_B4A5_9687);
    let mut image = Vec::with_capacity(size as usize);
    let mut block = 0u64;
    while (image.len() as u64) < size {
        let changed = (2..=n).any(|v| (block * 31 + u64::from(v)).is_multiple_of(40));
        let mut content = if block % 4 == 3 {
            vec![0u8; 4096]
        } else if block.is_multiple_of(3) {
            binary(&mut rng, 4096)
        } else {
            text(&mut rng, 4096)
        };
        if changed {
            content = text(&mut Rng(block ^ u64::from(n) << 40 | 1), 4096);
        }
        image.extend_from_slice(&content);
        block += 1;
    }
    fs::write(out, image)?;
    Ok("deterministic binary (no mke2fs found)")
}
