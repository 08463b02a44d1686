//! The per-request JSON log line, written without tracing-subscriber's
//! JSON formatter: the same object, field for field and in the same order,
//! as `tracing_subscriber::fmt().json().flatten_event(true)` writes for the
//! request event (`timestamp`, `level`, `message`, the event's fields,
//! `target`), into a reused per-thread buffer, with the timestamp's date
//! and time of day formatted once per second. It goes to the same
//! background writer as every other line, so lines keep their order.
//!
//! The generic formatter costs about a fifth of a point read's instructions
//! (a `String` for the timestamp, a visitor and a serializer per field,
//! dynamic dispatch per value; docs/performance.md). The level filter still
//! decides: nothing is formatted when the line's level is off.

use std::cell::RefCell;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_appender::non_blocking::NonBlocking;

use super::RequestRecord;

/// The writer every JSON line goes to; set when the JSON format is installed.
static WRITER: OnceLock<NonBlocking> = OnceLock::new();

/// The `target` of the request line: the module that emits it, as
/// tracing names it.
const TARGET: &str = "exam_results::telemetry";

/// Room for a typical line (about 300 bytes), reserved once per thread.
const LINE_CAPACITY: usize = 512;

/// Sends the request lines to `writer` from now on (JSON format only).
pub(super) fn install(writer: NonBlocking) {
    let _ = WRITER.set(writer);
}

/// Whether request lines are written here (else through tracing).
pub(super) fn installed() -> bool {
    WRITER.get().is_some()
}

struct Line {
    buf: Vec<u8>,
    /// The Unix second the prefix is for, and `"YYYY-MM-DDTHH:MM:SS.`.
    second: u64,
    prefix: [u8; 20],
}

thread_local! {
    static LINE: RefCell<Line> = const {
        RefCell::new(Line { buf: Vec::new(), second: u64::MAX, prefix: [0; 20] })
    };
}

/// Writes one request line at `level` (`"INFO"` or `"ERROR"`).
pub(super) fn write(level: &str, function: &str, record: &RequestRecord<'_>) {
    let Some(writer) = WRITER.get() else { return };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    LINE.with(|line| {
        let mut line = line.borrow_mut();
        let line = &mut *line;
        if line.second != now.as_secs() {
            line.second = now.as_secs();
            line.prefix = date_time_prefix(now.as_secs());
        }
        line.buf.clear();
        line.buf.reserve(LINE_CAPACITY);
        format(
            &mut line.buf,
            &line.prefix,
            now.subsec_micros(),
            level,
            function,
            record,
        );
        // The background writer takes a copy; it fails only once it has stopped.
        let _ = writer.clone().write_all(&line.buf);
    });
}

/// The line: `prefix` is the timestamp up to its fraction (`"YYYY-MM-DDTHH:MM:SS.`).
fn format(
    buf: &mut Vec<u8>,
    prefix: &[u8; 20],
    micros: u32,
    level: &str,
    function: &str,
    record: &RequestRecord<'_>,
) {
    buf.extend_from_slice(b"{\"timestamp\":\"");
    buf.extend_from_slice(prefix);
    push_padded(buf, micros, 6);
    buf.extend_from_slice(b"Z\",\"level\":\"");
    buf.extend_from_slice(level.as_bytes());
    buf.extend_from_slice(b"\",\"message\":\"request\"");
    field_plain(buf, "function", function);
    field_plain(buf, "method", record.method);
    field_plain(buf, "route", record.route);
    field_str(buf, "path", record.path);
    buf.extend_from_slice(b",\"status\":");
    buf.extend_from_slice(itoa::Buffer::new().format(record.status).as_bytes());
    buf.extend_from_slice(b",\"latency_ms\":");
    let latency = record.elapsed.as_secs_f64() * 1000.0;
    buf.extend_from_slice(ryu::Buffer::new().format_finite(latency).as_bytes());
    field_str(buf, "request_id", record.request_id);
    if let Some(code) = record.error_code {
        field_plain(buf, "error.code", code);
    }
    if let Some(cause) = record.error_cause {
        field_str(buf, "error.cause", cause);
    }
    field_plain(buf, "target", TARGET);
    buf.extend_from_slice(b"}\n");
}

/// A field whose value needs no escaping: one of the program's own names
/// (function, method and route labels, error codes, the target).
fn field_plain(buf: &mut Vec<u8>, name: &str, value: &str) {
    debug_assert!(!value.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20));
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b"\":\"");
    buf.extend_from_slice(value.as_bytes());
    buf.push(b'"');
}

fn field_str(buf: &mut Vec<u8>, name: &str, value: &str) {
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b"\":");
    push_json_string(buf, value);
}

/// `value` as a JSON string, escaped as serde_json escapes it.
pub(super) fn push_json_string(buf: &mut Vec<u8>, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push(b'"');
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            buf.extend_from_slice(b"\\u00");
            buf.push(HEX[usize::from(b >> 4)]);
            buf.push(HEX[usize::from(b & 0xf)]);
        } else {
            buf.extend_from_slice(escape);
        }
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'"');
}

fn push_padded(buf: &mut Vec<u8>, value: u32, width: usize) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(value);
    buf.extend(std::iter::repeat_n(
        b'0',
        width.saturating_sub(digits.len()),
    ));
    buf.extend_from_slice(digits.as_bytes());
}

/// `YYYY-MM-DDTHH:MM:SS.` (UTC) for a Unix time in seconds.
fn date_time_prefix(unix_seconds: u64) -> [u8; 20] {
    let days = unix_seconds / 86_400;
    let time = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let mut out = [0u8; 20];
    let mut put = |at: usize, value: i64, width: usize| {
        let mut v = value;
        for i in (0..width).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, (time / 3600) as i64, 2);
    put(14, (time / 60 % 60) as i64, 2);
    put(17, (time % 60) as i64, 2);
    out[4] = b'-';
    out[7] = b'-';
    out[10] = b'T';
    out[13] = b':';
    out[16] = b':';
    out[19] = b'.';
    out
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timestamp_prefix_is_the_utc_date_and_time_of_day() {
        assert_eq!(&date_time_prefix(0), b"1970-01-01T00:00:00.");
        // 2026-11-26T14:01:02Z and a leap day.
        assert_eq!(&date_time_prefix(1_795_701_662), b"2026-11-26T14:01:02.");
        assert_eq!(&date_time_prefix(1_709_164_799), b"2024-02-28T23:59:59.");
        assert_eq!(&date_time_prefix(1_709_164_800), b"2024-02-29T00:00:00.");
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for text in [
            "/results/2024/1",
            "a\"b\\c",
            "tab\there\n\r",
            "\u{1}\u{1f}\u{7f}",
            "é✓",
            "",
        ] {
            let mut buf = Vec::new();
            push_json_string(&mut buf, text);
            assert_eq!(
                String::from_utf8(buf).unwrap(),
                serde_json::to_string(text).unwrap()
            );
        }
    }

    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Blanks the timestamp's value (the first field, 27 characters).
    fn without_timestamp(line: &str) -> String {
        let start = "{\"timestamp\":\"".len();
        format!("{}{}", &line[..start], &line[start + 27..])
    }

    #[test]
    fn the_line_is_the_one_tracing_subscribers_json_format_writes() {
        let records = [
            RequestRecord {
                method: "GET",
                route: "/results/{exam_year}/{roll_number}",
                path: "/results/2024/100116224",
                status: 200,
                elapsed: std::time::Duration::from_nanos(8_777_808),
                request_id: "9570b5ee-4308-41bd-9cde-4f5b75e30166",
                error_code: None,
                error_cause: None,
            },
            RequestRecord {
                method: "OTHER",
                route: "unmatched",
                path: "/a\"b\\c%20",
                status: 503,
                elapsed: std::time::Duration::from_micros(1),
                request_id: "client-\"id\\",
                error_code: Some("unavailable"),
                error_cause: Some("db: \"down\"\n"),
            },
        ];
        for record in records {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_writer(move || writer.clone())
                .finish();
            let error = record.status >= 500;
            tracing::subscriber::with_default(subscriber, || {
                super::super::request_event(error, &record)
            });
            let theirs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
            let mut ours = Vec::new();
            let level = if error { "ERROR" } else { "INFO" };
            format(
                &mut ours,
                b"2026-11-26T14:01:02.",
                171_344,
                level,
                super::super::function(),
                &record,
            );
            let ours = String::from_utf8(ours).unwrap();
            assert!(
                ours.starts_with("{\"timestamp\":\"2026-11-26T14:01:02.171344Z\","),
                "{ours}"
            );
            assert_eq!(without_timestamp(&ours), without_timestamp(&theirs));
        }
    }
}
