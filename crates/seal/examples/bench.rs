//! Times ferry-seal against `openssl dgst -sha256` and `veritysetup format`
//! on one image, in one run.
//!
//! ```text
//! cargo run --release --example bench [IMAGE] [--runs N]
//! ```
//!
//! IMAGE defaults to `/tmp/ota-corpus/v2.ext4` if it exists, else a 1 GiB
//! file of mixed data generated once at `/tmp/seal-bench/mixed-1g.img`. The
//! image is read once first so every tool works from the page cache; each
//! tool runs N times (default 3) and the best time counts. Peak RSS is
//! measured per step: ours from the kernel's high-water mark (reset before
//! each step), the tools' with `/usr/bin/time -f %M`.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ferry_seal::{BLOCK_SIZE, Salt, build_tree, verify};

const DEFAULT_CORPUS_IMAGE: &str = "/tmp/ota-corpus/v2.ext4";
const WORK_DIR: &str = "/tmp/seal-bench";
const GENERATED_IMAGE_SIZE: u64 = 1 << 30;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

struct Measurement {
    name: &'static str,
    best: Duration,
    peak_rss_kib: Option<u64>,
    /// User plus system CPU time of the best run.
    cpu: Option<Duration>,
}

/// What one timed step reports.
struct Timing {
    best: Duration,
    peak_rss_kib: Option<u64>,
    cpu: Option<Duration>,
}

fn main() -> BenchResult<()> {
    let mut image_arg: Option<PathBuf> = None;
    let mut n_runs = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--runs" {
            n_runs = args.next().ok_or("--runs needs a number")?.parse()?;
        } else {
            image_arg = Some(PathBuf::from(arg));
        }
    }
    std::fs::create_dir_all(WORK_DIR)?;
    let image_path = match image_arg {
        Some(path) => path,
        None if Path::new(DEFAULT_CORPUS_IMAGE).exists() => PathBuf::from(DEFAULT_CORPUS_IMAGE),
        None => generated_image()?,
    };
    let file_size = std::fs::metadata(&image_path)?.len();
    let data_size = file_size / BLOCK_SIZE * BLOCK_SIZE;
    println!(
        "image {} : {} bytes, sealing {} ({} blocks), {} rayon threads, best of {}",
        image_path.display(),
        file_size,
        data_size,
        data_size / BLOCK_SIZE,
        rayon::current_num_threads(),
        n_runs
    );
    warm_page_cache(&image_path)?;

    let image = File::open(&image_path)?;
    let tree_path = Path::new(WORK_DIR).join("ours.tree");
    let salt = Salt::random();
    let mut root = None;
    let mut measurements = Vec::new();

    let timing = time_in_process(n_runs, || {
        let _ = std::fs::remove_file(&tree_path);
        let tree_file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tree_path)?;
        let (built_root, _) = build_tree(&image, data_size, salt, &tree_file, 0)?;
        root = Some(built_root);
        Ok(())
    })?;
    measurements.push(Measurement {
        name: "ferry-seal build",
        best: timing.best,
        peak_rss_kib: timing.peak_rss_kib,
        cpu: timing.cpu,
    });
    let root = root.ok_or("build did not run")?;

    let tree_file = File::open(&tree_path)?;
    let timing = time_in_process(n_runs, || {
        Ok(verify(&image, data_size, &tree_file, 0, &root)?)
    })?;
    measurements.push(Measurement {
        name: "ferry-seal verify",
        best: timing.best,
        peak_rss_kib: timing.peak_rss_kib,
        cpu: timing.cpu,
    });

    let image_text = image_path.to_str().ok_or("image path is not UTF-8")?;
    let timing = time_command(n_runs, &["openssl", "dgst", "-sha256", image_text])?;
    measurements.push(Measurement {
        name: "openssl dgst -sha256",
        best: timing.best,
        peak_rss_kib: timing.peak_rss_kib,
        cpu: timing.cpu,
    });

    let their_tree = Path::new(WORK_DIR).join("veritysetup.tree");
    let their_tree_text = their_tree.to_str().ok_or("tree path is not UTF-8")?;
    let salt_text = salt.to_string();
    let data_blocks_arg = format!("--data-blocks={}", data_size / BLOCK_SIZE);
    let format_args = [
        "veritysetup",
        "format",
        "--salt",
        &salt_text,
        &data_blocks_arg,
        image_text,
        their_tree_text,
    ];
    let timing = time_command(n_runs, &format_args)?;
    measurements.push(Measurement {
        name: "veritysetup format",
        best: timing.best,
        peak_rss_kib: timing.peak_rss_kib,
        cpu: timing.cpu,
    });

    let root_text = root.to_string();
    let verify_args = [
        "veritysetup",
        "verify",
        image_text,
        their_tree_text,
        &root_text,
    ];
    let timing = time_command(n_runs, &verify_args)?;
    measurements.push(Measurement {
        name: "veritysetup verify",
        best: timing.best,
        peak_rss_kib: timing.peak_rss_kib,
        cpu: timing.cpu,
    });

    // The CPU ceiling: hashing blocks already in memory, one thread and all.
    let in_memory: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    for (name, n_threads) in [("hash in memory, 1 thread", 1), ("hash in memory, all", 0)] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n_threads)
            .build()?;
        let start = Instant::now();
        let leaves = pool.install(|| ferry_seal::hash_leaves(&salt, &in_memory));
        let elapsed = start.elapsed();
        std::hint::black_box(leaves);
        println!(
            "{name:<26} {:>8.0} MB/s",
            mb_per_s(in_memory.len() as u64, elapsed)
        );
    }
    drop(in_memory);

    println!(
        "root hash {root} (veritysetup verify accepted it with veritysetup's tree: same salt)"
    );
    println!();
    println!(
        "{:<22} {:>9} {:>10} {:>12} {:>14}",
        "step", "seconds", "MB/s", "MB/CPU-s", "peak RSS MiB"
    );
    for measurement in &measurements {
        println!(
            "{:<22} {:>9.3} {:>10.0} {:>12} {:>14}",
            measurement.name,
            measurement.best.as_secs_f64(),
            mb_per_s(data_size, measurement.best),
            measurement.cpu.map_or("?".to_owned(), |cpu| format!(
                "{:.0}",
                mb_per_s(data_size, cpu)
            )),
            measurement
                .peak_rss_kib
                .map_or("?".to_owned(), |kib| format!("{:.1}", kib as f64 / 1024.0))
        );
    }
    let speed = |name: &str| {
        measurements
            .iter()
            .find(|measurement| measurement.name == name)
            .map_or(f64::NAN, |measurement| {
                mb_per_s(data_size, measurement.best)
            })
    };
    println!();
    for ours in ["ferry-seal build", "ferry-seal verify"] {
        println!(
            "{ours}: {:.2}x openssl sha256 (goal >= 1.5), {:.2}x veritysetup format (goal >= 2), {:.2}x veritysetup verify",
            speed(ours) / speed("openssl dgst -sha256"),
            speed(ours) / speed("veritysetup format"),
            speed(ours) / speed("veritysetup verify"),
        );
    }
    Ok(())
}

fn mb_per_s(n_bytes: u64, duration: Duration) -> f64 {
    n_bytes as f64 / duration.as_secs_f64() / 1e6
}

/// Best time of `n_runs` calls, and the peak RSS (KiB) over them.
fn time_in_process(
    n_runs: usize,
    mut step: impl FnMut() -> BenchResult<()>,
) -> BenchResult<Timing> {
    // Writing 5 to clear_refs resets the kernel's peak RSS (VmHWM).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let mut best = Duration::MAX;
    let mut best_cpu = None;
    for _ in 0..n_runs {
        let cpu_before = own_cpu_time();
        let start = Instant::now();
        step()?;
        let elapsed = start.elapsed();
        if elapsed < best {
            best = elapsed;
            best_cpu = own_cpu_time()
                .zip(cpu_before)
                .map(|(after, before)| after - before);
        }
    }
    Ok(Timing {
        best,
        peak_rss_kib: peak_rss_kib(),
        cpu: best_cpu,
    })
}

/// User plus system CPU time of this process, all threads, from
/// `/proc/self/stat` (clock ticks of 1/100 s).
fn own_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of the file; the name was field 2.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Best time of `n_runs` runs of a command, its CPU time, and its peak RSS.
fn time_command(n_runs: usize, args: &[&str]) -> BenchResult<Timing> {
    let mut best = Duration::MAX;
    let mut peak = None;
    let mut best_cpu = None;
    for _ in 0..n_runs {
        let start = Instant::now();
        let output = Command::new("/usr/bin/time")
            .args(["-f", "%M %U %S"])
            .args(args)
            .output()?;
        let elapsed = start.elapsed();
        if !output.status.success() {
            return Err(format!(
                "{} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let fields: Vec<&str> = stderr
            .lines()
            .last()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        peak = fields.first().and_then(|field| field.parse().ok()).or(peak);
        if elapsed < best {
            best = elapsed;
            let seconds = |idx: usize| fields.get(idx).and_then(|field| field.parse::<f64>().ok());
            best_cpu = seconds(1)
                .zip(seconds(2))
                .map(|(user, system)| Duration::from_secs_f64(user + system));
        }
    }
    Ok(Timing {
        best,
        peak_rss_kib: peak,
        cpu: best_cpu,
    })
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn warm_page_cache(path: &Path) -> BenchResult<()> {
    let mut file = File::open(path)?;
    let mut buffer = vec![0u8; 8 << 20];
    while file.read(&mut buffer)? != 0 {}
    Ok(())
}

/// A 1 GiB image of mixed data (zeros, text, noise), made once.
fn generated_image() -> BenchResult<PathBuf> {
    let path = Path::new(WORK_DIR).join("mixed-1g.img");
    if std::fs::metadata(&path).is_ok_and(|meta| meta.len() == GENERATED_IMAGE_SIZE) {
        return Ok(path);
    }
    println!("generating {} ...", path.display());
    let mut file = std::io::BufWriter::new(File::create(&path)?);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut chunk = vec![0u8; 1 << 20];
    for chunk_idx in 0..GENERATED_IMAGE_SIZE >> 20 {
        match chunk_idx % 4 {
            0 => chunk.fill(0),
            1 => {
                for (byte, text) in chunk.iter_mut().zip(b"ferry system image ".iter().cycle()) {
                    *byte = *text;
                }
            }
            _ => {
                for word in chunk.chunks_exact_mut(8) {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    word.copy_from_slice(&state.to_le_bytes());
                }
            }
        }
        file.write_all(&chunk)?;
    }
    file.flush()?;
    Ok(path)
}
