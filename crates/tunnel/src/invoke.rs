//! The NDJSON stream of `:invoke` responses (broadcast with acknowledgements).
//!
//! For every client ACK the service streams one line
//! `{"Payload":"<Engine.IO payload>"}\n` as an `HttpResponse` chunk with
//! `NotCompleted: true`. The SDK only processes complete lines, so every line
//! ends with `\n`; lines may be split or merged across chunks, which
//! [`InvokeLineDecoder`] handles on the receiving side.
//!
//! ```
//! use portcullis_tunnel::invoke::{InvokeLineDecoder, invoke_line};
//!
//! let line = invoke_line("431[\"answer\"]");
//! assert_eq!(&line[..], b"{\"Payload\":\"431[\\\"answer\\\"]\"}\n");
//!
//! let mut decoder = InvokeLineDecoder::default();
//! assert!(decoder.push(&line[..5]).is_empty());
//! assert_eq!(decoder.push(&line[5..]), vec![Ok("431[\"answer\"]".to_owned())]);
//! ```

use bytes::Bytes;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Line<'a> {
    #[serde(rename = "Payload", borrow)]
    payload: std::borrow::Cow<'a, str>,
}

/// One NDJSON line `{"Payload":"..."}\n`, JSON-escaped, for an `:invoke` stream chunk.
pub fn invoke_line(eio_payload: &str) -> Bytes {
    let mut out = serde_json::to_vec(&Line {
        payload: eio_payload.into(),
    })
    // Serialising one string field cannot fail.
    .unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

/// Why an `:invoke` line could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid :invoke stream line: {0}")]
pub struct InvokeLineError(pub String);

/// Reassembles `:invoke` stream chunks into `Payload` strings (the SDK side).
///
/// Incomplete trailing data stays buffered until its `\n` arrives. Blank
/// lines are skipped; other JSON keys are ignored.
#[derive(Debug, Default, Clone)]
pub struct InvokeLineDecoder {
    buffer: Vec<u8>,
}

impl InvokeLineDecoder {
    /// Feeds one chunk; returns the payloads of the lines it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Result<String, InvokeLineError>> {
        self.buffer.extend_from_slice(chunk);
        let Some(last_newline) = self.buffer.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let rest = self.buffer.split_off(last_newline + 1);
        let complete = std::mem::replace(&mut self.buffer, rest);
        complete
            .split(|&b| b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .map(|line| {
                serde_json::from_slice::<Line<'_>>(line)
                    .map(|l| l.payload.into_owned())
                    .map_err(|e| InvokeLineError(e.to_string()))
            })
            .collect()
    }

    /// Bytes received after the last complete line.
    pub fn pending(&self) -> &[u8] {
        &self.buffer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_json_stringify() {
        assert_eq!(
            &invoke_line("431[\"answer-from-c1\"]")[..],
            b"{\"Payload\":\"431[\\\"answer-from-c1\\\"]\"}\n"
        );
        assert_eq!(
            &invoke_line("461-[{\"_placeholder\":true,\"num\":0}]\u{1e}bAQID\\\n")[..],
            b"{\"Payload\":\"461-[{\\\"_placeholder\\\":true,\\\"num\\\":0}]\\u001ebAQID\\\\\\n\"}\n"
        );
    }

    #[test]
    fn decoder_handles_merged_and_split_lines() {
        let mut all = invoke_line("431[1]").to_vec();
        all.extend_from_slice(&invoke_line("432[2]"));
        all.extend_from_slice(&invoke_line("433[3]"));
        let mut d = InvokeLineDecoder::default();
        let mut got = Vec::new();
        for chunk in all.chunks(7) {
            got.extend(d.push(chunk));
        }
        assert_eq!(
            got,
            vec![
                Ok("431[1]".into()),
                Ok("432[2]".into()),
                Ok("433[3]".into())
            ]
        );
        assert!(d.pending().is_empty());
        assert!(d.push(b"{\"Payload\":1}\n")[0].is_err());
        assert_eq!(
            d.push(b"{\"Other\":0,\"Payload\":\"3\"}\n\n"),
            vec![Ok("3".into())]
        );
    }
}
