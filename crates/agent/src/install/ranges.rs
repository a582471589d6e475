//! Fetching byte ranges of an artifact into a file at their offsets: several ranges per
//! request (`Range: bytes=a-b,c-d,…`, answered `206 multipart/byteranges`), or one per
//! request from a server or CDN that refuses multi-range requests (it answers `200` with
//! the whole body, or `416`): the caller remembers that and asks one range at a time.
//!
//! The multipart body is parsed as it streams, each part's bytes written straight to
//! the file at the offset its `Content-Range` names, so memory stays at one network
//! buffer whatever the batch size. Nothing here trusts the bytes: the caller checks
//! every chunk's digest.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use futures_util::StreamExt;

use crate::AgentError;
use crate::client::Client;

/// Longest part header block accepted in a multipart answer.
const MAX_PART_HEAD: usize = 16 << 10;

/// Whether to ask several ranges per request: true until a server refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeMode {
    /// `Range: bytes=a-b,c-d,…` in one request.
    Multi,
    /// One range per request (the server refused a multi-range request).
    Single,
}

/// Where fetched bytes go: a file, written at payload offsets.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    /// The open file.
    pub file: &'a File,
    /// Its path (for errors).
    pub path: &'a Path,
}

/// What a batch fetch tells its caller as it goes.
pub trait BatchSink: Send {
    /// `n` more body bytes arrived (multipart framing and refused answers included).
    fn received(&mut self, n: u64);
    /// `len` bytes at payload `offset` were written to the destination file (not yet
    /// synced): the caller may checkpoint.
    fn written(&mut self, offset: u64, len: u64) -> Result<(), AgentError>;
}

/// What fetching a batch did.
#[derive(Debug, Clone, Default)]
pub struct BatchStats {
    /// Body bytes received (multipart framing and refused answers included).
    pub bytes_received: u64,
    /// HTTP requests made.
    pub requests: u64,
}

/// Fetches `ranges` of the artifact at `path` (of `size` bytes) into `out` at their
/// offsets, telling `sink` what arrives and what is written. In [`RangeMode::Multi`], a
/// `200` or `416` answer switches `mode` to [`RangeMode::Single`] and the batch is fetched
/// again one range per request.
pub async fn fetch_batch(
    client: &Client,
    path: &str,
    size: u64,
    ranges: &[Range<u64>],
    mode: &mut RangeMode,
    out: Destination<'_>,
    sink: &mut dyn BatchSink,
) -> Result<BatchStats, AgentError> {
    let mut stats = BatchStats::default();
    if *mode == RangeMode::Multi && ranges.len() > 1 {
        let started = Instant::now();
        let response = client.get_ranges(path, ranges).await?;
        stats.requests += 1;
        let status = response.status();
        if status == reqwest::StatusCode::PARTIAL_CONTENT {
            let answer = Answer {
                asked: ranges,
                response,
                started,
            };
            read_partial(client, path, size, answer, out, sink, &mut stats).await?;
            return Ok(stats);
        }
        if status == reqwest::StatusCode::OK || status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE
        {
            // Refused: drop the answer unread (a 200 would be the whole artifact).
            tracing::warn!(%path, %status, "the server refuses multi-range requests; asking one range at a time");
            *mode = RangeMode::Single;
        } else {
            return Err(AgentError::ServerRefused {
                url: path.to_owned(),
                status: status.as_u16(),
                code: None,
            });
        }
    }
    for range in ranges {
        let started = Instant::now();
        let response = client.get_ranges(path, std::slice::from_ref(range)).await?;
        stats.requests += 1;
        let status = response.status();
        if status == reqwest::StatusCode::PARTIAL_CONTENT {
            let answer = Answer {
                asked: std::slice::from_ref(range),
                response,
                started,
            };
            read_partial(client, path, size, answer, out, sink, &mut stats).await?;
        } else if status.is_success() {
            return Err(AgentError::RangesUnsupported {
                path: path.to_owned(),
                status,
            });
        } else {
            return Err(AgentError::ServerRefused {
                url: path.to_owned(),
                status: status.as_u16(),
                code: None,
            });
        }
    }
    Ok(stats)
}

/// A `206` answer to read: the ranges it was asked for, and when the request was sent (its
/// overall deadline runs from then).
struct Answer<'a> {
    asked: &'a [Range<u64>],
    response: reqwest::Response,
    started: Instant,
}

/// Reads a `206` answer for `asked`: one `Content-Range` body or a multipart one, every
/// asked range covered by a part.
async fn read_partial(
    client: &Client,
    path: &str,
    size: u64,
    answer: Answer<'_>,
    out: Destination<'_>,
    sink: &mut dyn BatchSink,
    stats: &mut BatchStats,
) -> Result<(), AgentError> {
    let Answer {
        asked,
        response,
        started,
    } = answer;
    let asked_bytes: u64 = asked.iter().map(|r| r.end - r.start).sum();
    let invalid = |reason: String| AgentError::ServerInvalid {
        url: path.to_owned(),
        reason,
    };
    let headers = response.headers();
    let content_type = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut body = match boundary(&content_type) {
        Some(boundary) => Body::Multipart(Multipart::new(&boundary, size)),
        None => {
            let content_range = headers
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let range = parse_content_range(content_range, size).ok_or_else(|| {
                invalid(format!("a 206 answer with Content-Range {content_range:?}"))
            })?;
            Body::Single {
                next: range.start,
                range,
            }
        }
    };
    let mut stream = response.bytes_stream();
    let mut received = 0u64;
    while let Some(piece) = stream.next().await {
        let piece = match piece {
            Ok(piece) => piece,
            Err(e) if e.is_timeout() => {
                return Err(client.stream_failed(
                    path,
                    started,
                    asked_bytes,
                    received,
                    asked_bytes,
                ));
            }
            Err(_) => {
                return Err(AgentError::PayloadTruncated {
                    received,
                    expected: asked_bytes,
                });
            }
        };
        received += piece.len() as u64;
        stats.bytes_received += piece.len() as u64;
        sink.received(piece.len() as u64);
        let mut write = |offset: u64, bytes: &[u8]| {
            out.file
                .write_all_at(bytes, offset)
                .map_err(AgentError::io("writing downloaded chunks", out.path))?;
            sink.written(offset, bytes.len() as u64)
        };
        match &mut body {
            Body::Single { range, next } => {
                let n = (piece.len() as u64).min(range.end - *next) as usize;
                write(*next, &piece[..n])?;
                *next += n as u64;
            }
            Body::Multipart(parser) => {
                parser
                    .feed(&piece, &mut write)
                    .map_err(|reason| match reason {
                        Feed::Write(e) => e,
                        Feed::Invalid(reason) => invalid(reason),
                    })?
            }
        }
    }
    let covered: Vec<Range<u64>> = match body {
        Body::Single { range, next } => std::iter::once(range.start..next).collect(),
        Body::Multipart(parser) => {
            if !parser.finished {
                return Err(AgentError::PayloadTruncated {
                    received,
                    expected: asked_bytes,
                });
            }
            parser.parts
        }
    };
    for range in asked {
        if !covered
            .iter()
            .any(|c| c.start <= range.start && range.end <= c.end)
        {
            // A short single-range body is a cut connection; a multipart answer that
            // finished without a part is a wrong answer.
            return Err(if covered.len() == 1 && covered[0].start <= range.start {
                AgentError::PayloadTruncated {
                    received,
                    expected: asked_bytes,
                }
            } else {
                invalid(format!(
                    "the answer does not cover bytes {}..{}",
                    range.start, range.end
                ))
            });
        }
    }
    Ok(())
}

enum Body {
    Single { range: Range<u64>, next: u64 },
    Multipart(Multipart),
}

/// The boundary of a `multipart/byteranges` content type.
fn boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/byteranges") {
        return None;
    }
    params.split(';').find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// `bytes a-b/size` → `a..b+1`, inside `size`.
fn parse_content_range(value: &str, size: u64) -> Option<Range<u64>> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    if total.trim() != "*" && total.trim().parse::<u64>().ok()? != size {
        return None;
    }
    let (start, end) = span.split_once('-')?;
    let (start, end) = (
        start.trim().parse::<u64>().ok()?,
        end.trim().parse::<u64>().ok()?,
    );
    (start <= end && end < size).then_some(start..end + 1)
}

/// Why feeding a multipart body stopped.
#[derive(Debug)]
pub enum Feed<E> {
    /// The sink failed.
    Write(E),
    /// The body is not a valid `multipart/byteranges` answer.
    Invalid(String),
}

/// A streaming `multipart/byteranges` parser that hands each part's bytes to a writer
/// at the offset its `Content-Range` names.
#[derive(Debug)]
pub struct Multipart {
    delimiter: Vec<u8>,
    size: u64,
    /// Bytes not yet parsed (outside part bodies only).
    pending: Vec<u8>,
    /// Inside a part: the next offset and the bytes left.
    body: Option<(u64, u64)>,
    /// Parts read completely.
    pub parts: Vec<Range<u64>>,
    /// The closing delimiter was seen.
    pub finished: bool,
}

impl Multipart {
    /// A parser for parts of an artifact of `size` bytes separated by `boundary`.
    pub fn new(boundary: &str, size: u64) -> Multipart {
        Multipart {
            delimiter: format!("--{boundary}").into_bytes(),
            size,
            pending: Vec::new(),
            body: None,
            parts: Vec::new(),
            finished: false,
        }
    }

    /// Parses `data`, the next bytes of the body. A loop over slices of `data`, not
    /// recursion and not copies: a body of many small parts in one piece costs linear
    /// time and a flat stack. Only an unfinished header block is kept for the next call.
    pub fn feed<E>(
        &mut self,
        data: &[u8],
        write: &mut impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<(), Feed<E>> {
        let joined: Vec<u8>;
        let mut data = data;
        if !self.pending.is_empty() {
            // `pending` is only ever a header block cut short (bounded), outside bodies.
            joined = [std::mem::take(&mut self.pending).as_slice(), data].concat();
            data = &joined;
        }
        loop {
            if let Some((offset, left)) = self.body {
                let n = (data.len() as u64).min(left) as usize;
                write(offset, &data[..n]).map_err(Feed::Write)?;
                data = &data[n..];
                let left = left - n as u64;
                if left == 0 {
                    self.body = None;
                    if let Some(last) = self.parts.last_mut() {
                        last.end = offset + n as u64;
                    }
                } else {
                    self.body = Some((offset + n as u64, left));
                    return Ok(());
                }
            }
            if self.finished {
                return Ok(()); // the epilogue is ignored
            }
            // Find the next delimiter, then its header block.
            let Some(at) = find(data, &self.delimiter) else {
                return self.keep(data);
            };
            let after = at + self.delimiter.len();
            if data.len() < after + 2 {
                return self.keep(data);
            }
            if &data[after..after + 2] == b"--" {
                self.finished = true;
                return Ok(());
            }
            let Some(end) = find(&data[after..], b"\r\n\r\n") else {
                return self.keep(data);
            };
            let head = String::from_utf8_lossy(&data[after..after + end]);
            let range = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.trim()
                        .eq_ignore_ascii_case("content-range")
                        .then(|| parse_content_range(value, self.size))
                })
                .flatten()
                .ok_or_else(|| {
                    Feed::Invalid(format!("a part without a valid Content-Range: {head:?}"))
                })?;
            self.parts.push(range.start..range.start);
            self.body = Some((range.start, range.end - range.start));
            // Go on with what followed the header block.
            data = &data[after + end + 4..];
        }
    }

    /// Keeps `data` (the start of a header block, or bytes before a delimiter) for the
    /// next call, refusing header blocks that never end.
    fn keep<E>(&mut self, data: &[u8]) -> Result<(), Feed<E>> {
        self.pending = data.to_vec();
        self.bounded()
    }

    /// Refuses header blocks that never end.
    fn bounded<E>(&self) -> Result<(), Feed<E>> {
        if self.pending.len() > MAX_PART_HEAD + self.delimiter.len() + 4 {
            Err(Feed::Invalid(
                "a multipart header block longer than 16 KiB".into(),
            ))
        } else {
            Ok(())
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(boundary: &str, parts: &[(u64, &[u8])], size: u64) -> Vec<u8> {
        let mut out = b"preamble".to_vec();
        for (start, bytes) in parts {
            out.extend_from_slice(
                format!(
                    "\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {}-{}/{size}\r\n\r\n",
                    start,
                    start + bytes.len() as u64 - 1
                )
                .as_bytes(),
            );
            out.extend_from_slice(bytes);
        }
        out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        out
    }

    #[test]
    fn multipart_parts_land_at_their_offsets_however_the_body_is_split() {
        // Part bytes that look like a delimiter must not confuse the parser.
        let tricky: &[u8] = b"\r\n--b\r\n\r\nnot a header";
        let full = body("b", &[(3, b"abc"), (10, tricky), (40, b"z")], 64);
        for split in [1, 2, 3, 7, 64, full.len()] {
            let mut image = [b'.'; 64];
            let mut parser = Multipart::new("b", 64);
            for piece in full.chunks(split) {
                parser
                    .feed(piece, &mut |offset, bytes: &[u8]| {
                        image[offset as usize..offset as usize + bytes.len()]
                            .copy_from_slice(bytes);
                        Ok::<(), ()>(())
                    })
                    .unwrap();
            }
            assert!(parser.finished, "split {split}");
            assert_eq!(
                parser.parts,
                vec![3..6, 10..10 + tricky.len() as u64, 40..41]
            );
            assert_eq!(&image[3..6], b"abc");
            assert_eq!(&image[10..10 + tricky.len()], tricky);
            assert_eq!(image[40], b'z');
        }
    }

    #[test]
    fn bad_multipart_answers_are_refused() {
        let mut sink = |_: u64, _: &[u8]| Ok::<(), ()>(());
        let mut parser = Multipart::new("b", 10);
        let outside = b"\r\n--b\r\nContent-Range: bytes 5-20/10\r\n\r\nxx";
        assert!(matches!(
            parser.feed(outside, &mut sink),
            Err(Feed::Invalid(_))
        ));
        let mut parser = Multipart::new("b", 10);
        let no_range = b"\r\n--b\r\nContent-Type: x\r\n\r\nxx";
        assert!(matches!(
            parser.feed(no_range, &mut sink),
            Err(Feed::Invalid(_))
        ));
        let mut parser = Multipart::new("b", 10);
        let endless = vec![b'h'; 64 << 10];
        assert!(matches!(
            parser.feed(&endless, &mut sink),
            Err(Feed::Invalid(_))
        ));
        let mut parser = Multipart::new("b", 10);
        parser
            .feed(
                b"\r\n--b\r\nContent-Range: bytes 0-3/10\r\n\r\nab",
                &mut sink,
            )
            .unwrap();
        assert!(!parser.finished, "a cut body is not a finished one");
    }

    /// A hostile answer of many one-byte parts in one piece is parsed in a loop: it must
    /// not grow the stack part by part (a tokio worker has 2 MiB).
    #[test]
    fn many_parts_in_one_piece_do_not_grow_the_stack() {
        let parts: Vec<(u64, &[u8])> = (0..100_000u64).map(|i| (i, &b"x"[..])).collect();
        let full = body("b", &parts, 100_000);
        let parsed = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                let mut parser = Multipart::new("b", 100_000);
                let mut written = 0u64;
                parser
                    .feed(&full, &mut |_, bytes: &[u8]| {
                        written += bytes.len() as u64;
                        Ok::<(), ()>(())
                    })
                    .map(|()| (parser.parts.len(), parser.finished, written))
                    .map_err(|_| ())
            })
            .unwrap()
            .join()
            .expect("the parser overflowed its stack");
        assert_eq!(parsed, Ok((100_000, true, 100_000)));
    }

    #[test]
    fn content_types_and_ranges_parse() {
        assert_eq!(
            boundary("multipart/byteranges; boundary=ferry-1").as_deref(),
            Some("ferry-1")
        );
        assert_eq!(
            boundary("multipart/byteranges; charset=x; boundary=\"q\"").as_deref(),
            Some("q")
        );
        assert_eq!(boundary("application/octet-stream"), None);
        assert_eq!(parse_content_range("bytes 2-4/10", 10), Some(2..5));
        assert_eq!(parse_content_range("bytes 2-4/11", 10), None);
        assert_eq!(parse_content_range("bytes 4-2/10", 10), None);
        assert_eq!(parse_content_range("bytes 2-10/10", 10), None);
    }
}
