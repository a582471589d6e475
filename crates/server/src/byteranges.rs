//! Byte-range answers shared by the server and `ferry cache`: one range is a plain `206`
//! with `Content-Range`; several are one `206` `multipart/byteranges` body (RFC 9110
//! §14.6), each part with its own `Content-Range`, so a device fetches all the chunks it
//! misses in one request.
//!
//! A request whose ranges add up to more than the artifact (overlaps asked on purpose
//! multiply the bytes served) or that names more than [`MAX_RANGES`] ranges is answered
//! with the whole body (`200`), which RFC 9110 allows.

use std::future::Future;
use std::io;
use std::ops::{Bound, Range};
use std::pin::Pin;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::headers::Range as RangeHeader;
use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};

use crate::ServerError;

/// Most ranges served in one multipart answer.
pub const MAX_RANGES: usize = 256;

/// What a `Range` header asks of an artifact of a known size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// No range (or one we answer whole): `200` with everything.
    Whole,
    /// One range: `206` with `Content-Range`.
    One(Range<u64>),
    /// Several: `206` `multipart/byteranges`.
    Many(Vec<Range<u64>>),
}

/// The ranges `range` asks of `size` bytes; `RangeNotSatisfiable` when none is inside.
pub fn wanted(range: Option<&RangeHeader>, size: u64) -> Result<Wanted, ServerError> {
    let Some(range) = range else {
        return Ok(Wanted::Whole);
    };
    let mut ranges = Vec::new();
    for (start, end) in range.satisfiable_ranges(size) {
        let start = match start {
            Bound::Included(s) => s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match end {
            Bound::Included(e) => e.saturating_add(1),
            Bound::Excluded(e) => e,
            Bound::Unbounded => size,
        }
        .min(size);
        if start < end {
            ranges.push(start..end);
        }
        if ranges.len() > MAX_RANGES {
            return Ok(Wanted::Whole);
        }
    }
    match ranges.len() {
        0 => Err(ServerError::RangeNotSatisfiable { size }),
        1 => Ok(Wanted::One(ranges.remove(0))),
        _ if ranges.iter().map(|r| r.end - r.start).sum::<u64>() > size => Ok(Wanted::Whole),
        _ => Ok(Wanted::Many(ranges)),
    }
}

/// A stream of an artifact's bytes.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// Opens the bytes of one range (or all, `None`) of the artifact being answered.
pub type OpenRange = std::sync::Arc<
    dyn Fn(Option<Range<u64>>) -> Pin<Box<dyn Future<Output = io::Result<ByteStream>> + Send>>
        + Send
        + Sync,
>;

/// The answer to a GET of an artifact of `size` bytes, for `wanted`, reading bytes with
/// `open`. Every answer says `Accept-Ranges: bytes` and its exact `Content-Length`.
pub async fn respond(
    wanted: Wanted,
    size: u64,
    content_type: &'static str,
    open: OpenRange,
) -> Result<Response, ServerError> {
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let io_error = |source| ServerError::Io {
        op: "reading an artifact",
        source,
    };
    match wanted {
        Wanted::Whole => {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            headers.insert(header::CONTENT_LENGTH, size.into());
            let body = open(None).await.map_err(io_error)?;
            Ok((StatusCode::OK, headers, Body::from_stream(body)).into_response())
        }
        Wanted::One(range) => {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            headers.insert(header::CONTENT_RANGE, content_range(&range, size));
            headers.insert(header::CONTENT_LENGTH, (range.end - range.start).into());
            let body = open(Some(range)).await.map_err(io_error)?;
            Ok((
                StatusCode::PARTIAL_CONTENT,
                headers,
                Body::from_stream(body),
            )
                .into_response())
        }
        Wanted::Many(ranges) => {
            let boundary = format!("ferry-{}", uuid::Uuid::new_v4().simple());
            let heads: Vec<Bytes> = ranges
                .iter()
                .map(|r| part_head(&boundary, content_type, r, size))
                .collect();
            let tail = Bytes::from(format!("\r\n--{boundary}--\r\n"));
            let length = heads.iter().map(|h| h.len() as u64).sum::<u64>()
                + ranges.iter().map(|r| r.end - r.start).sum::<u64>()
                + tail.len() as u64;
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}"))
                    .map_err(|_| ServerError::RangeNotSatisfiable { size })?,
            );
            headers.insert(header::CONTENT_LENGTH, length.into());
            // Each part's bytes are opened only when the body reaches it.
            let parts = stream::iter(heads.into_iter().zip(ranges))
                .then(move |(head, range)| {
                    let open = open.clone();
                    async move {
                        let head = stream::once(async move { Ok(head) });
                        match open(Some(range)).await {
                            Ok(bytes) => head.chain(bytes).boxed(),
                            Err(e) => head.chain(stream::once(async move { Err(e) })).boxed(),
                        }
                    }
                })
                .flatten()
                .chain(stream::once(async move { Ok(tail) }));
            Ok((
                StatusCode::PARTIAL_CONTENT,
                headers,
                Body::from_stream(parts),
            )
                .into_response())
        }
    }
}

fn content_range(range: &Range<u64>, size: u64) -> HeaderValue {
    let text = format!("bytes {}-{}/{size}", range.start, range.end - 1);
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("bytes */0"))
}

fn part_head(boundary: &str, content_type: &str, range: &Range<u64>, size: u64) -> Bytes {
    Bytes::from(format!(
        "\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {}-{}/{size}\r\n\r\n",
        range.start,
        range.end - 1
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum_extra::headers::Header;
    use ferry_types::Diagnose;

    fn header(value: &str) -> RangeHeader {
        let value = HeaderValue::from_str(value).unwrap();
        RangeHeader::decode(&mut std::iter::once(&value)).unwrap()
    }

    #[test]
    fn ranges_are_read_as_asked_and_absurd_requests_get_the_whole_body() {
        assert_eq!(wanted(None, 10).unwrap(), Wanted::Whole);
        assert_eq!(
            wanted(Some(&header("bytes=2-4")), 10).unwrap(),
            Wanted::One(2..5)
        );
        assert_eq!(
            wanted(Some(&header("bytes=-3")), 10).unwrap(),
            Wanted::One(7..10)
        );
        assert_eq!(
            wanted(Some(&header("bytes=0-1,5-")), 10).unwrap(),
            Wanted::Many(vec![0..2, 5..10])
        );
        // Past the end is unsatisfiable; overlaps adding up to more than the body are not
        // amplified.
        assert_eq!(
            wanted(Some(&header("bytes=20-30")), 10).unwrap_err().code(),
            "RANGE_NOT_SATISFIABLE"
        );
        assert_eq!(
            wanted(Some(&header("bytes=0-9,0-9")), 10).unwrap(),
            Wanted::Whole
        );
        let many = (0..=MAX_RANGES)
            .map(|i| format!("{i}-{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            wanted(Some(&header(&format!("bytes={many}"))), 10_000).unwrap(),
            Wanted::Whole
        );
    }
}
