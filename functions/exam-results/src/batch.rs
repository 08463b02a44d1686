//! Batch loads: a CSV or NDJSON body read line by line as it arrives, each
//! line validated as [`crate::model`] validates one result, and the report
//! of a rejected batch. Knows nothing of HTTP or SQL.
//!
//! - CSV (`text/csv`): a header naming the two columns `roll_number` and
//!   `marks` (either order), then one row per line; a field may be quoted.
//! - NDJSON (`application/x-ndjson`): one object `{"roll_number", "marks"}`
//!   per line.
//!
//! Lines end in `\n` (a `\r` before it is dropped); blank lines are skipped;
//! line numbers count every line of the body from 1. A line longer than
//! [`MAX_LINE_BYTES`] is rejected without being kept, so memory stays
//! bounded by one line whatever the body's size.

use serde::{Deserialize, Serialize};

use crate::model::{check_marks, check_roll_number};

/// The longest line accepted.
pub const MAX_LINE_BYTES: usize = 1024;
/// How many rejected rows a report lists (it counts all of them).
pub const REPORTED_ROWS: usize = 20;

/// The body's format, from its media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/csv` with a `roll_number,marks` header.
    Csv,
    /// `application/x-ndjson`: one JSON object per line.
    Ndjson,
}

impl Format {
    /// The format of a `Content-Type` value (parameters ignored).
    pub fn from_media_type(value: &[u8]) -> Option<Self> {
        let mime = value.split(|b| *b == b';').next()?.trim_ascii();
        if mime.eq_ignore_ascii_case(b"text/csv") {
            Some(Self::Csv)
        } else if mime.eq_ignore_ascii_case(b"application/x-ndjson") {
            Some(Self::Ndjson)
        } else {
            None
        }
    }

    /// Its canonical media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv",
            Self::Ndjson => "application/x-ndjson",
        }
    }
}

/// One valid row, with its line number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    /// The line of the body it came from (from 1).
    pub line: i64,
    /// The roll number.
    pub roll_number: i64,
    /// The marks.
    pub marks: i32,
}

/// One rejected row of a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// The line of the body (from 1).
    pub line: i64,
    /// Its roll number, when it could be read.
    pub roll_number: Option<i64>,
    /// Why it was rejected.
    pub reason: String,
}

/// Why a batch was rejected: counts of each kind of rejected row and the
/// first [`REPORTED_ROWS`] of them, by line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Data rows in the body (header and blank lines excluded).
    pub rows: i64,
    /// Rows rejected in all.
    pub rejected: i64,
    /// Rows that are not a valid result (format, range).
    pub invalid: i64,
    /// Rows whose roll number an earlier row of the batch has.
    pub duplicates: i64,
    /// Rows whose result exists already (when not replacing).
    pub existing: i64,
    /// The first rejected rows, by line.
    pub first_rejected: Vec<Rejected>,
}

impl Report {
    /// Adds rejected rows of one kind: `count` in all, `examples` among them.
    pub fn add(&mut self, kind: Kind, count: i64, examples: Vec<Rejected>) {
        match kind {
            Kind::Invalid => self.invalid += count,
            Kind::Duplicate => self.duplicates += count,
            Kind::Existing => self.existing += count,
        }
        self.rejected += count;
        self.first_rejected.extend(examples);
        self.first_rejected.sort_by_key(|r| r.line);
        self.first_rejected.truncate(REPORTED_ROWS);
    }

    /// Whether any row was rejected.
    pub fn is_rejected(&self) -> bool {
        self.rejected > 0
    }
}

/// The kinds of rejected rows.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// Not a valid result.
    Invalid,
    /// A roll number repeated within the batch.
    Duplicate,
    /// A result that exists already.
    Existing,
}

/// Reads a body chunk by chunk into rows and rejected lines.
#[derive(Debug)]
pub struct Reader {
    format: Format,
    /// The current line's bytes so far (at most [`MAX_LINE_BYTES`]).
    pending: Vec<u8>,
    /// The current line is too long: its bytes are being skipped.
    overlong: bool,
    /// The number of the current line.
    line: i64,
    /// CSV: the column order, once the header is read.
    columns: Option<[usize; 2]>,
    /// What has been rejected so far.
    pub report: Report,
}

/// What one line held.
enum Parsed {
    Nothing,
    Row(i64, i32),
}

impl Reader {
    /// A reader of a body in `format`.
    pub fn new(format: Format) -> Self {
        Self {
            format,
            pending: Vec::new(),
            overlong: false,
            line: 1,
            columns: None,
            report: Report::default(),
        }
    }

    /// Reads one chunk, calling `row` for each complete valid row in it.
    pub fn push(&mut self, mut chunk: &[u8], mut row: impl FnMut(Row)) {
        while let Some(end) = chunk.iter().position(|b| *b == b'\n') {
            self.take(&chunk[..end]);
            self.end_line(&mut row);
            chunk = &chunk[end + 1..];
        }
        self.take(chunk);
    }

    /// Ends the body: the last line, if it has no newline.
    pub fn finish(&mut self, mut row: impl FnMut(Row)) {
        if !self.pending.is_empty() || self.overlong {
            self.end_line(&mut row);
        }
        if self.format == Format::Csv && self.columns.is_none() && self.report.rows == 0 {
            self.reject(1, None, "the body has no `roll_number,marks` header".into());
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        if self.overlong {
            return;
        }
        if self.pending.len() + bytes.len() > MAX_LINE_BYTES {
            self.overlong = true;
            self.pending.clear();
        } else {
            self.pending.extend_from_slice(bytes);
        }
    }

    fn end_line(&mut self, row: &mut impl FnMut(Row)) {
        let line = self.line;
        self.line += 1;
        if std::mem::take(&mut self.overlong) {
            self.report.rows += 1;
            self.reject(
                line,
                None,
                format!("line longer than {MAX_LINE_BYTES} bytes"),
            );
            return;
        }
        let mut buffer = std::mem::take(&mut self.pending);
        let text = buffer.strip_suffix(b"\r").unwrap_or(&buffer);
        match self.parse(text) {
            Ok(Parsed::Nothing) => {}
            Ok(Parsed::Row(roll_number, marks)) => {
                self.report.rows += 1;
                row(Row {
                    line,
                    roll_number,
                    marks,
                });
            }
            Err((roll_number, reason)) => {
                self.report.rows += 1;
                self.reject(line, roll_number, reason);
            }
        }
        buffer.clear();
        self.pending = buffer;
    }

    fn reject(&mut self, line: i64, roll_number: Option<i64>, reason: String) {
        let example = (self.report.first_rejected.len() < REPORTED_ROWS).then_some(Rejected {
            line,
            roll_number,
            reason,
        });
        self.report
            .add(Kind::Invalid, 1, example.into_iter().collect());
    }

    fn parse(&mut self, text: &[u8]) -> Result<Parsed, (Option<i64>, String)> {
        if text.trim_ascii().is_empty() {
            return Ok(Parsed::Nothing);
        }
        let text = std::str::from_utf8(text).map_err(|_| (None, "not UTF-8".to_owned()))?;
        let (roll_number, marks) = match self.format {
            Format::Ndjson => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Line {
                    roll_number: i64,
                    marks: i32,
                }
                // serde reads a struct from an array too: only an object is a row.
                if !text.trim_start().starts_with('{') {
                    return Err((None, "not a JSON object".into()));
                }
                let parsed: Line = serde_json::from_str(text)
                    .map_err(|err| (None, format!("not a result object: {err}")))?;
                (parsed.roll_number, parsed.marks)
            }
            Format::Csv => {
                let fields: Vec<&str> = text.split(',').map(unquote).collect();
                let Some(columns) = self.columns else {
                    return match fields.as_slice() {
                        ["roll_number", "marks"] => {
                            self.columns = Some([0, 1]);
                            Ok(Parsed::Nothing)
                        }
                        ["marks", "roll_number"] => {
                            self.columns = Some([1, 0]);
                            Ok(Parsed::Nothing)
                        }
                        _ => {
                            // Read the rest in the usual order to report every line.
                            self.columns = Some([0, 1]);
                            Err((
                                None,
                                "the first line must be the header `roll_number,marks`".into(),
                            ))
                        }
                    };
                };
                if fields.len() != 2 {
                    return Err((None, format!("expected 2 fields, found {}", fields.len())));
                }
                let roll_number = fields[columns[0]].parse::<i64>().map_err(|_| {
                    (
                        None,
                        format!("roll_number `{}` is not an integer", fields[columns[0]]),
                    )
                })?;
                let marks = fields[columns[1]].parse::<i32>().map_err(|_| {
                    (
                        Some(roll_number),
                        format!("marks `{}` is not an integer", fields[columns[1]]),
                    )
                })?;
                (roll_number, marks)
            }
        };
        check_roll_number(roll_number).map_err(|err| (None, err.to_string()))?;
        check_marks(marks).map_err(|err| (Some(roll_number), err.to_string()))?;
        Ok(Parsed::Row(roll_number, marks))
    }
}

/// A CSV field without surrounding blanks and quotes.
fn unquote(field: &str) -> &str {
    let field = field.trim();
    field
        .strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .unwrap_or(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(format: Format, chunks: &[&[u8]]) -> (Vec<Row>, Report) {
        let mut reader = Reader::new(format);
        let mut rows = Vec::new();
        for chunk in chunks {
            reader.push(chunk, |row| rows.push(row));
        }
        reader.finish(|row| rows.push(row));
        (rows, reader.report)
    }

    #[test]
    fn csv_rows_split_across_chunks_are_read_with_their_line_numbers() {
        let (rows, report) = read(
            Format::Csv,
            &[b"roll_number,marks\r\n1,5", b"0\n\n2,\"7\"\n", b"3,100"],
        );
        assert_eq!(
            rows,
            vec![
                Row {
                    line: 2,
                    roll_number: 1,
                    marks: 50
                },
                Row {
                    line: 4,
                    roll_number: 2,
                    marks: 7
                },
                Row {
                    line: 5,
                    roll_number: 3,
                    marks: 100
                },
            ]
        );
        assert!(!report.is_rejected());
        assert_eq!(report.rows, 3);
    }

    #[test]
    fn the_header_may_name_the_columns_in_either_order() {
        let (rows, _) = read(Format::Csv, &[b"marks,roll_number\n40,9\n"]);
        assert_eq!(
            rows,
            vec![Row {
                line: 2,
                roll_number: 9,
                marks: 40
            }]
        );
    }

    #[test]
    fn invalid_lines_are_reported_with_their_reason() {
        let (rows, report) = read(
            Format::Csv,
            &[b"roll_number,marks\n1,50\nx,1\n2,101\n3\n0,5\n"],
        );
        assert_eq!(rows.len(), 1);
        assert_eq!((report.rows, report.invalid, report.rejected), (5, 4, 4));
        let lines: Vec<i64> = report.first_rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6]);
        assert!(report.first_rejected[1].reason.contains("marks"));
        assert_eq!(report.first_rejected[1].roll_number, Some(2));
    }

    #[test]
    fn a_missing_header_rejects_the_batch() {
        let (_, report) = read(Format::Csv, &[b"1,50\n"]);
        assert_eq!(report.first_rejected[0].line, 1);
        let (_, empty) = read(Format::Csv, &[b""]);
        assert!(empty.is_rejected());
    }

    #[test]
    fn an_overlong_line_is_rejected_without_being_kept() {
        let long = vec![b'1'; MAX_LINE_BYTES * 3];
        let mut reader = Reader::new(Format::Ndjson);
        reader.push(&long, |_| {});
        assert!(reader.pending.len() <= MAX_LINE_BYTES);
        reader.push(b"\n{\"roll_number\": 1, \"marks\": 2}\n", |_| {});
        reader.finish(|_| {});
        assert_eq!(reader.report.invalid, 1);
        assert_eq!(reader.report.first_rejected[0].line, 1);
    }

    #[test]
    fn ndjson_lines_are_objects_with_exactly_the_two_fields() {
        let (rows, report) = read(
            Format::Ndjson,
            &[b"{\"roll_number\": 1, \"marks\": 2}\n{\"roll_number\": 2}\n[1,2]\n{\"roll_number\": 3, \"marks\": 4, \"x\": 1}\n"],
        );
        assert_eq!(
            rows,
            vec![Row {
                line: 1,
                roll_number: 1,
                marks: 2
            }]
        );
        assert_eq!(report.invalid, 3);
    }

    #[test]
    fn a_report_keeps_the_first_rows_by_line_and_counts_all() {
        let mut report = Report::default();
        let at = |line| Rejected {
            line,
            roll_number: None,
            reason: String::new(),
        };
        report.add(Kind::Existing, 100, (50..70).map(at).collect());
        report.add(Kind::Duplicate, 1, vec![at(3)]);
        assert_eq!(
            (report.rejected, report.existing, report.duplicates),
            (101, 100, 1)
        );
        assert_eq!(report.first_rejected.len(), REPORTED_ROWS);
        assert_eq!(report.first_rejected[0].line, 3);
    }

    #[test]
    fn media_types_name_the_format() {
        assert_eq!(
            Format::from_media_type(b"text/csv; charset=utf-8"),
            Some(Format::Csv)
        );
        assert_eq!(
            Format::from_media_type(b"application/x-ndjson"),
            Some(Format::Ndjson)
        );
        assert_eq!(Format::from_media_type(b"application/json"), None);
    }
}
