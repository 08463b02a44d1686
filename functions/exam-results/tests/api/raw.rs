//! Raw TCP clients: bytes exactly as written on the socket, responses parsed
//! by hand, and how long the server took to close a connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One response read off a raw connection.
#[derive(Debug)]
pub(crate) struct RawReply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl RawReply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The stable error code of a JSON error body, if it is one.
    pub(crate) fn error_code(&self) -> Option<String> {
        self.json()?["error"]["code"].as_str().map(str::to_owned)
    }
}

/// A connection and what has been read from it but not yet parsed.
pub(crate) struct RawConn {
    pub(crate) stream: TcpStream,
    buffer: Vec<u8>,
}

impl RawConn {
    pub(crate) async fn open(address: SocketAddr) -> RawConn {
        RawConn {
            stream: TcpStream::connect(address).await.expect("connects"),
            buffer: Vec::new(),
        }
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        // A server may answer and close before reading everything sent.
        let _ = self.stream.write_all(bytes).await;
    }

    /// Reads one response; `None` if the connection closes (or `wait`
    /// passes) before a complete one arrives. A response to `HEAD` has no
    /// body whatever its `content-length` says: set `to_head`.
    pub(crate) async fn response(&mut self, wait: Duration, to_head: bool) -> Option<RawReply> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(reply) = self.parse(to_head) {
                return Some(reply);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let mut chunk = [0u8; 16 * 1024];
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn parse(&mut self, to_head: bool) -> Option<RawReply> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut head = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head_len) = head.parse(&self.buffer).ok()? else {
            return None;
        };
        let status = head.code?;
        let headers: Vec<(String, String)> = head
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .filter(|_| !to_head)
            .unwrap_or(0);
        if self.buffer.len() < head_len + length {
            return None;
        }
        let body = self.buffer[head_len..head_len + length].to_vec();
        self.buffer.drain(..head_len + length);
        Some(RawReply {
            status,
            headers,
            body,
        })
    }

    /// Waits until the server closes the connection; how long that took,
    /// or `None` if it was still open after `wait`. Anything received is discarded.
    pub(crate) async fn closed_within(&mut self, wait: Duration) -> Option<Duration> {
        let started = Instant::now();
        let deadline = started + wait;
        let mut chunk = [0u8; 4096];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
                Ok(Ok(_)) => continue,
                Err(_) => return None,
            }
        }
    }
}

/// Sends `bytes` on a new connection and reads one response.
pub(crate) async fn exchange(
    address: SocketAddr,
    bytes: &[u8],
    wait: Duration,
) -> Option<RawReply> {
    let mut conn = RawConn::open(address).await;
    conn.send(bytes).await;
    conn.response(wait, false).await
}
