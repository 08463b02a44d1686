//! The domain: what a result is, and what the API accepts.
//!
//! Validation mirrors the database's CHECK constraints (sql/migrations), so a
//! bad value is refused before it reaches the database. It returns an
//! [`InputError`]; this module knows nothing of HTTP (error.rs maps each
//! domain error to its status, once).

use serde::{Deserialize, Serialize};

/// The largest roll number the API accepts (twelve digits).
pub const MAX_ROLL_NUMBER: i64 = 999_999_999_999;
/// The highest mark.
pub const MAX_MARKS: i32 = 100;
/// Page size when `limit` is not given.
pub const DEFAULT_PAGE_SIZE: i64 = 100;
/// The largest page a client may ask for.
pub const MAX_PAGE_SIZE: i64 = 1000;

/// Why a request's values were refused, before any database work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Not a value of its field's kind at all: letters for a number; an
    /// unknown, repeated or missing query parameter; a malformed query string.
    #[error("{0}")]
    Malformed(String),
    /// A well-formed value outside its range (year, roll number, marks, page size).
    #[error("{0}")]
    OutOfRange(String),
    /// A number in a result's URL written with a sign or leading zeros: such
    /// a URL names no result (each result has exactly one URL).
    #[error("`{0}` is not how a result's URL writes a number (no sign, no leading zeros)")]
    NotCanonical(String),
}

/// One student's result for one exam year, as stored and as returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExamResult {
    /// Unique within an exam year.
    pub roll_number: i64,
    /// The partition key.
    pub exam_year: i32,
    /// 0..=100.
    pub marks: i32,
}

impl ExamResult {
    /// The result's key.
    pub fn key(&self) -> ResultKey {
        ResultKey {
            exam_year: self.exam_year,
            roll_number: self.roll_number,
        }
    }
}

/// `POST /results` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewResult {
    /// Unique within an exam year.
    pub roll_number: i64,
    /// The exam year.
    pub exam_year: i32,
    /// 0..=100.
    pub marks: i32,
}

/// `PUT /results/{exam_year}/{roll_number}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarksUpdate {
    /// 0..=100.
    pub marks: i32,
}

/// The range of exam years the API accepts (from configuration).
#[derive(Clone, Copy, Debug)]
pub struct YearRange {
    /// First accepted year.
    pub min: i32,
    /// Last accepted year.
    pub max: i32,
}

/// A result's key: the exam year and the roll number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResultKey {
    /// The exam year (partition key).
    pub exam_year: i32,
    /// The roll number.
    pub roll_number: i64,
}

impl ResultKey {
    /// Parses and validates the two path segments of `/results/{exam_year}/{roll_number}`:
    /// canonical decimal integers (no sign, no leading zeros) within range.
    pub fn from_path(
        exam_year: &str,
        roll_number: &str,
        years: YearRange,
    ) -> Result<Self, InputError> {
        let exam_year = parse_canonical::<i32>("exam_year", exam_year)?;
        let roll_number = parse_canonical::<i64>("roll_number", roll_number)?;
        years.check(exam_year)?;
        check_roll_number(roll_number)?;
        Ok(Self {
            exam_year,
            roll_number,
        })
    }

    /// The canonical location of this result.
    pub fn location(&self) -> String {
        format!("/results/{}/{}", self.exam_year, self.roll_number)
    }
}

impl YearRange {
    /// Parses and checks an `{exam_year}` path segment (canonical, within the range).
    pub fn from_path(&self, exam_year: &str) -> Result<i32, InputError> {
        let year = parse_canonical::<i32>("exam_year", exam_year)?;
        self.check(year)?;
        Ok(year)
    }

    /// Out of range unless `year` is within the range.
    pub fn check(&self, year: i32) -> Result<(), InputError> {
        if year < self.min || year > self.max {
            return Err(InputError::OutOfRange(format!(
                "exam_year must be between {} and {}, got {year}",
                self.min, self.max
            )));
        }
        Ok(())
    }
}

impl NewResult {
    /// Checks every field; the first problem found is reported.
    pub fn validate(self, years: YearRange) -> Result<ExamResult, InputError> {
        check_roll_number(self.roll_number)?;
        years.check(self.exam_year)?;
        check_marks(self.marks)?;
        Ok(ExamResult {
            roll_number: self.roll_number,
            exam_year: self.exam_year,
            marks: self.marks,
        })
    }
}

impl MarksUpdate {
    /// Checks the marks.
    pub fn validate(self) -> Result<i32, InputError> {
        check_marks(self.marks)?;
        Ok(self.marks)
    }
}

/// Out of range unless the roll number is 1..=999_999_999_999.
pub fn check_roll_number(roll_number: i64) -> Result<(), InputError> {
    if !(1..=MAX_ROLL_NUMBER).contains(&roll_number) {
        return Err(InputError::OutOfRange(format!(
            "roll_number must be between 1 and {MAX_ROLL_NUMBER}, got {roll_number}"
        )));
    }
    Ok(())
}

/// Out of range unless marks are 0..=100.
pub fn check_marks(marks: i32) -> Result<(), InputError> {
    if !(0..=MAX_MARKS).contains(&marks) {
        return Err(InputError::OutOfRange(format!(
            "marks must be between 0 and {MAX_MARKS}, got {marks}"
        )));
    }
    Ok(())
}

/// A validated `GET /results` query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListQuery {
    /// The one year listed.
    pub exam_year: i32,
    /// Only roll numbers strictly greater than this (keyset cursor); 0 for the first page.
    pub after: i64,
    /// Page size, 1..=1000.
    pub limit: i64,
}

impl ListQuery {
    /// Parses `exam_year=Y&after=R&limit=N` from the raw query string.
    pub fn parse(raw: &str, years: YearRange) -> Result<Self, InputError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
            .map_err(|_| InputError::Malformed("query string is malformed".into()))?;
        let (mut exam_year, mut after, mut limit) = (None, None, None);
        for (name, value) in pairs {
            let slot = match name.as_str() {
                "exam_year" => &mut exam_year,
                "after" => &mut after,
                "limit" => &mut limit,
                other => {
                    return Err(InputError::Malformed(format!(
                        "unknown query parameter `{other}`; expected exam_year, after, limit"
                    )))
                }
            };
            if slot.replace(value).is_some() {
                return Err(InputError::Malformed(format!(
                    "query parameter `{name}` is given more than once"
                )));
            }
        }
        let exam_year = exam_year
            .ok_or_else(|| InputError::Malformed("query parameter `exam_year` is required".into()))
            .and_then(|v| parse_number::<i32>("exam_year", &v))?;
        years.check(exam_year)?;
        let after = match after {
            Some(v) => parse_number::<i64>("after", &v)?,
            None => 0,
        };
        if !(0..=MAX_ROLL_NUMBER).contains(&after) {
            return Err(InputError::OutOfRange(format!(
                "after must be between 0 and {MAX_ROLL_NUMBER}, got {after}"
            )));
        }
        let limit = match limit {
            Some(v) => parse_number::<i64>("limit", &v)?,
            None => DEFAULT_PAGE_SIZE,
        };
        if !(1..=MAX_PAGE_SIZE).contains(&limit) {
            return Err(InputError::OutOfRange(format!(
                "limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}"
            )));
        }
        Ok(Self {
            exam_year,
            after,
            limit,
        })
    }
}

/// One page of a listing.
#[derive(Debug, Serialize, Deserialize)]
pub struct Page {
    /// Results in roll-number order.
    pub items: Vec<ExamResult>,
    /// Pass as `after` for the next page; `null` on the last page.
    pub next_after: Option<i64>,
}

fn parse_number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, InputError> {
    value.parse::<T>().map_err(|_| {
        let shown: String = value.chars().take(32).collect();
        InputError::Malformed(format!("`{name}` must be an integer, got `{shown}`"))
    })
}

/// Like [`parse_number`], but a number with a sign or leading zeros is
/// [`InputError::NotCanonical`]: `0`, `7` and `2024` are canonical; `+7`,
/// `-7`, `07` and `00` are not.
fn parse_canonical<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, InputError> {
    let number = parse_number::<T>(name, value)?;
    let canonical =
        value.bytes().all(|b| b.is_ascii_digit()) && (value == "0" || !value.starts_with('0'));
    if canonical {
        Ok(number)
    } else {
        Err(InputError::NotCanonical(value.chars().take(32).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YEARS: YearRange = YearRange {
        min: 2000,
        max: 2100,
    };

    fn kind(err: InputError) -> &'static str {
        match err {
            InputError::Malformed(_) => "malformed",
            InputError::OutOfRange(_) => "out_of_range",
            InputError::NotCanonical(_) => "not_canonical",
        }
    }

    fn new(roll_number: i64, exam_year: i32, marks: i32) -> NewResult {
        NewResult {
            roll_number,
            exam_year,
            marks,
        }
    }

    #[test]
    fn a_result_within_all_bounds_is_accepted() {
        let result = new(1, 2000, 0).validate(YEARS).unwrap();
        assert_eq!(result.marks, 0);
        assert!(new(MAX_ROLL_NUMBER, 2100, 100).validate(YEARS).is_ok());
    }

    #[test]
    fn marks_outside_zero_to_one_hundred_are_rejected() {
        for marks in [-1, 101, i32::MAX] {
            let err = new(1, 2024, marks).validate(YEARS).unwrap_err();
            assert!(matches!(err, InputError::OutOfRange(_)));
            assert!(err.to_string().contains("marks"));
        }
    }

    #[test]
    fn roll_numbers_must_be_positive_and_at_most_twelve_digits() {
        for roll in [0, -5, MAX_ROLL_NUMBER + 1] {
            assert!(matches!(
                new(roll, 2024, 50).validate(YEARS),
                Err(InputError::OutOfRange(_))
            ));
        }
    }

    #[test]
    fn years_outside_the_configured_range_are_rejected() {
        let err = new(1, 1999, 50).validate(YEARS).unwrap_err();
        assert!(err.to_string().contains("2000"));
    }

    #[test]
    fn unknown_json_fields_are_rejected() {
        let err = serde_json::from_str::<NewResult>(
            r#"{"roll_number":1,"exam_year":2024,"marks":5,"grade":"A"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("grade"));
    }

    #[test]
    fn a_path_with_letters_is_a_bad_request() {
        assert_eq!(
            ResultKey::from_path("2024", "abc", YEARS)
                .map_err(kind)
                .unwrap_err(),
            "malformed"
        );
        assert_eq!(
            ResultKey::from_path("twenty", "1", YEARS)
                .map_err(kind)
                .unwrap_err(),
            "malformed"
        );
    }

    #[test]
    fn a_path_number_with_a_sign_or_leading_zeros_names_no_result() {
        for (year, roll) in [
            ("02024", "1"),
            ("2024", "+1"),
            ("2024", "-1"),
            ("2024", "01"),
        ] {
            assert!(
                matches!(
                    ResultKey::from_path(year, roll, YEARS),
                    Err(InputError::NotCanonical(_))
                ),
                "{year}/{roll}"
            );
        }
        assert!(matches!(
            ResultKey::from_path("2024", "0", YEARS),
            Err(InputError::OutOfRange(_))
        ));
        assert_eq!(
            ResultKey::from_path("2024", "10", YEARS)
                .unwrap()
                .location(),
            "/results/2024/10"
        );
    }

    #[test]
    fn a_listing_defaults_to_the_first_page_of_one_hundred() {
        let query = ListQuery::parse("exam_year=2024", YEARS).unwrap();
        assert_eq!(
            query,
            ListQuery {
                exam_year: 2024,
                after: 0,
                limit: 100
            }
        );
    }

    #[test]
    fn a_listing_requires_the_exam_year() {
        assert_eq!(
            ListQuery::parse("limit=5", YEARS)
                .map_err(kind)
                .unwrap_err(),
            "malformed"
        );
    }

    #[test]
    fn a_listing_caps_the_limit_at_one_thousand() {
        assert!(ListQuery::parse("exam_year=2024&limit=1000", YEARS).is_ok());
        assert_eq!(
            ListQuery::parse("exam_year=2024&limit=1001", YEARS)
                .map_err(kind)
                .unwrap_err(),
            "out_of_range"
        );
        assert_eq!(
            ListQuery::parse("exam_year=2024&limit=0", YEARS)
                .map_err(kind)
                .unwrap_err(),
            "out_of_range"
        );
    }

    #[test]
    fn a_listing_rejects_unknown_and_repeated_parameters() {
        assert_eq!(
            ListQuery::parse("exam_year=2024&page=2", YEARS)
                .map_err(kind)
                .unwrap_err(),
            "malformed"
        );
        assert_eq!(
            ListQuery::parse("exam_year=2024&exam_year=2025", YEARS)
                .map_err(kind)
                .unwrap_err(),
            "malformed"
        );
        assert_eq!(
            ListQuery::parse("exam_year=2024&after=x", YEARS)
                .map_err(kind)
                .unwrap_err(),
            "malformed"
        );
    }
}
