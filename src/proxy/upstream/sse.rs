//! Server-sent events from an upstream's streamable-HTTP response, decoded by `sse-stream`
//! (every line ending the spec allows, bare `\r` included; unknown fields ignored), with a
//! cap on the bytes read toward one event (`limits.maxUpstreamMessageBytes`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

/// Why reading the events of a response stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SseError {
    /// More than the cap was read toward one event.
    #[error("an event over the size limit")]
    TooLarge,
    /// Reading the body failed.
    #[error("{0}")]
    Read(String),
    /// The bytes are not an event stream (invalid UTF-8 in a field).
    #[error("a malformed event stream: {0}")]
    Malformed(String),
}

/// The `data` of each event (events without data, such as a priming event that carries
/// only an id and `retry`, are skipped), from a stream of body chunks. More than `max` bytes
/// read since the last event (give or take the rest of the chunk that ended it) stops the
/// stream with [`SseError::TooLarge`], so one event holds at most about `max` bytes in memory.
pub(crate) fn data_events<S>(
    chunks: S,
    max: usize,
) -> impl Stream<Item = Result<String, SseError>> + Send
where
    S: Stream<Item = Result<Bytes, SseError>> + Send + 'static,
{
    let since_event = Arc::new(AtomicUsize::new(0));
    let counted = since_event.clone();
    let capped = chunks.map(move |chunk| {
        let chunk = chunk?;
        let seen = counted.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len();
        if seen > max {
            return Err(SseError::TooLarge);
        }
        Ok(chunk)
    });
    sse_stream::SseByteStream::new(capped).filter_map(move |event| {
        let out = match event {
            Ok(e) => {
                since_event.store(0, Ordering::Relaxed);
                e.data.map(Ok)
            }
            Err(sse_stream::Error::Body(e)) => Some(Err(e
                .downcast_ref::<SseError>()
                .cloned()
                .unwrap_or_else(|| SseError::Read(e.to_string())))),
            Err(e) => Some(Err(SseError::Malformed(e.to_string()))),
        };
        std::future::ready(out)
    })
}

/// A response body as a stream of chunks.
pub(crate) fn body_chunks(
    resp: super::http::Answer,
) -> impl Stream<Item = Result<Bytes, SseError>> + Send + 'static {
    futures_util::stream::unfold(Some(resp), |resp| async move {
        let mut resp = resp?;
        match resp.chunk().await {
            Ok(Some(b)) => Some((Ok(b), Some(resp))),
            Ok(None) => None,
            Err(e) => Some((Err(SseError::Read(e)), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn decode(chunks: &[&[u8]], max: usize) -> Vec<Result<String, SseError>> {
        let owned: Vec<Result<Bytes, SseError>> = chunks
            .iter()
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        data_events(futures_util::stream::iter(owned), max)
            .collect()
            .await
    }

    #[tokio::test]
    async fn every_line_ending_ends_an_event_even_across_chunks() {
        let got = decode(
            &[
                b"data: 1\n\nda",
                b"ta: 2\r\n\r",
                b"\ndata: 3\r\r",
                b"event: message\rid: 7\rdata: {\"a\":\r",
                b"data: 1}\r\r",
            ],
            1000,
        )
        .await;
        let want: Vec<Result<String, SseError>> = vec![
            Ok("1".into()),
            Ok("2".into()),
            Ok("3".into()),
            Ok("{\"a\":\n1}".into()),
        ];
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn events_without_data_and_unknown_fields_are_skipped() {
        let got = decode(
            &[b"id: 1\nretry: 500\n\n: comment\nfoo: bar\ndata: x\n\n"],
            1000,
        )
        .await;
        assert_eq!(got, vec![Ok("x".to_string())]);
    }

    #[tokio::test]
    async fn an_event_over_the_cap_stops_the_stream() {
        // Many small events are fine: the count restarts at each event.
        let small: Vec<&[u8]> = std::iter::repeat_n(&b"data: 12345\n\n"[..], 50).collect();
        let got = decode(&small, 20).await;
        assert_eq!(got.len(), 50);
        assert!(got.iter().all(|e| e.as_deref() == Ok("12345")));
        // One event that never ends is cut off once it passes the cap.
        let big: Vec<&[u8]> = std::iter::repeat_n(&b"data: 0123456789"[..], 10).collect();
        let got = decode(&big, 35).await;
        assert_eq!(got, vec![Err(SseError::TooLarge)]);
    }

    #[tokio::test]
    async fn read_errors_and_bad_utf8_end_the_stream_with_a_reason() {
        let chunks = vec![
            Ok(Bytes::from_static(b"data: 1\n\n")),
            Err(SseError::Read("connection reset".into())),
        ];
        let got: Vec<_> = data_events(futures_util::stream::iter(chunks), 100)
            .collect()
            .await;
        assert_eq!(
            got,
            vec![
                Ok("1".into()),
                Err(SseError::Read("connection reset".into()))
            ]
        );
        let got = decode(&[b"data: \xff\n\n"], 100).await;
        assert!(
            matches!(got.as_slice(), [Err(SseError::Malformed(_))]),
            "{got:?}"
        );
    }
}
