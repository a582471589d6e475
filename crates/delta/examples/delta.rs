//! Encode, apply, index, plan and assemble on files, for `bench/deltas`.
//!
//! ```text
//! delta encode OLD NEW DELTA [--level N] [--segment-mib N] [--reference-mib N] [--no-reference]
//! delta apply OLD DELTA OUT
//! delta index NEW PAYLOAD INDEX [--hint OLD]...
//! delta plan SLOT INDEX                 prints the download plan as JSON
//! delta reuse SLOT INDEX PAYLOAD OUT    plans, "downloads" the ranges from PAYLOAD, assembles
//! ```

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::process::ExitCode;
use std::time::Instant;

use ferry_delta::{
    ApplyOptions, EncodeOptions, Error, IndexOptions, PayloadIndex, PlanOptions, RangeFile,
    apply_any, assemble, build_payload, encode_expanded, plan_reuse,
};
use ferry_types::Diagnose;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error [{}]: {err}\nfix: {}", err.code(), err.fix());
            ExitCode::FAILURE
        }
    }
}

fn open(path: &str) -> Result<File, Error> {
    File::open(path).map_err(|source| Error::Io {
        operation: "open input",
        source,
    })
}

fn create(path: &str) -> Result<File, Error> {
    File::create(path).map_err(|source| Error::Io {
        operation: "create output",
        source,
    })
}

fn flag(args: &[String], name: &str) -> Option<usize> {
    let idx = args.iter().position(|a| a == name)?;
    args.get(idx + 1)?.parse().ok()
}

fn run(args: &[String]) -> Result<(), Error> {
    let started = Instant::now();
    match args.first().map(String::as_str) {
        Some("encode") if args.len() >= 4 => {
            let mut opts = EncodeOptions::default();
            if let Some(level) = flag(args, "--level") {
                opts.level = level as i32;
            }
            if let Some(mib) = flag(args, "--segment-mib") {
                opts.segment_bytes = mib << 20;
            }
            if let Some(mib) = flag(args, "--reference-mib") {
                opts.max_reference_bytes = mib << 20;
            }
            opts.use_references = !args.iter().any(|a| a == "--no-reference");
            let mut out = BufWriter::new(create(&args[3])?);
            let read = |p: &str| {
                std::fs::read(p).map_err(|e| Error::Io {
                    operation: "read image",
                    source: e,
                })
            };
            let (old, new) = (read(&args[1])?, read(&args[2])?);
            let (manifest, expanded) = encode_expanded(&old, &new, &mut out, &opts)?;
            eprintln!(
                "encoded in {:.2} s ({}): copy {} zero {} literal {} blocks, literal {} -> {} bytes, base read {} bytes",
                started.elapsed().as_secs_f64(),
                if expanded {
                    "expanded below the zstd blocks"
                } else {
                    "plain"
                },
                manifest.copy_blocks,
                manifest.zero_blocks,
                manifest.literal_blocks,
                manifest.literal_blocks * 4096,
                manifest.literal_compressed_bytes,
                manifest.base_bytes
            );
            Ok(())
        }
        Some("apply") if args.len() == 4 => {
            let reference = open(&args[1])?;
            let delta = BufReader::with_capacity(1 << 20, open(&args[2])?);
            let mut out = create(&args[3])?;
            let report = apply_any(&reference, delta, &mut out, &ApplyOptions::default())?;
            eprintln!(
                "applied in {:.2} s: wrote {} bytes, read {} delta bytes, peak buffers {} bytes",
                started.elapsed().as_secs_f64(),
                report.bytes_written,
                report.delta_bytes_read,
                report.peak_buffer_bytes
            );
            Ok(())
        }
        Some("index") if args.len() >= 4 => {
            let mut hints = Vec::new();
            let mut idx = 4;
            while idx + 1 < args.len() {
                if args[idx] == "--hint" {
                    hints.push(open(&args[idx + 1])?);
                }
                idx += 2;
            }
            let mut payload = BufWriter::new(create(&args[2])?);
            let index = build_payload(
                &open(&args[1])?,
                &hints,
                &mut payload,
                &IndexOptions::default(),
            )?;
            let bytes = index.to_bytes();
            std::fs::write(&args[3], &bytes).map_err(|source| Error::Io {
                operation: "write index",
                source,
            })?;
            eprintln!(
                "indexed in {:.2} s: {} chunks, payload {} bytes, index {} bytes",
                started.elapsed().as_secs_f64(),
                index.chunks.len(),
                index.payload_len(),
                bytes.len()
            );
            Ok(())
        }
        Some(command @ ("plan" | "reuse")) if args.len() >= 3 => {
            let slot = open(&args[1])?;
            let index_bytes = std::fs::read(&args[2]).map_err(|source| Error::Io {
                operation: "read index",
                source,
            })?;
            let index = PayloadIndex::from_bytes(&index_bytes)?;
            let plan = plan_reuse(&slot, &index, &PlanOptions::default())?;
            let planned = started.elapsed().as_secs_f64();
            let download: u64 = plan.download_bytes();
            println!(
                "{{\"index_bytes\":{},\"download_bytes\":{},\"total_bytes\":{},\"reused_chunks\":{},\"missing_chunks\":{},\"requests\":{},\"plan_s\":{planned:.2}}}",
                index_bytes.len(),
                download,
                download + index_bytes.len() as u64,
                plan.reused_chunks(),
                plan.missing.len(),
                plan.requests.len()
            );
            if command == "reuse" && args.len() == 5 {
                // Stand-in for HTTP range requests: copy exactly the planned ranges.
                let payload = open(&args[3])?;
                let mut fetched = RangeFile::default();
                for request in &plan.requests {
                    for range in request {
                        fetched.fetch_from(&payload, range.clone())?;
                    }
                }
                let mut out = create(&args[4])?;
                let report = assemble(&slot, &index, &plan, &mut fetched, &[], &mut out, |_| {})?;
                eprintln!(
                    "assembled in {:.2} s: {} bytes written, {} reused, {} downloaded",
                    started.elapsed().as_secs_f64(),
                    report.bytes_written,
                    report.bytes_reused,
                    report.bytes_from_payload
                );
            }
            Ok(())
        }
        _ => {
            eprintln!("usage: see the doc comment of examples/delta.rs");
            Err(Error::IndexInvalid {
                detail: "bad command line".into(),
            })
        }
    }
}
