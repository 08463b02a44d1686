//! A year's statistics from its mark counts: number of results, mean,
//! median, pass rate and the distribution over grade bands.
//!
//! The counts come from `result_mark_counts` (one row per mark that occurs,
//! kept in step with `student_results` by triggers; see
//! sql/migrations/0007_publications.sql), so computing a year costs one
//! indexed read of at most 101 rows, never a scan of the year's results.
//! This module knows nothing of HTTP or SQL.

use serde::Serialize;

use crate::model::MAX_MARKS;

/// `PASS_MARK` when not configured.
pub const DEFAULT_PASS_MARK: i32 = 40;

/// `GRADE_BANDS` when not configured: grade and lowest mark, best first.
pub const DEFAULT_GRADE_BANDS: &str = "A:80,B:70,C:60,D:50,E:40,U:0";

/// How marks are graded: the pass mark and the bands (from configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grading {
    /// A result passes when its marks are at least this.
    pub pass_mark: i32,
    /// Grade bands, highest lowest-mark first; the last starts at 0.
    pub bands: Vec<Band>,
}

/// One grade band: every mark from `min_marks` up to the next band's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Band {
    /// The grade's name, e.g. `A`.
    pub grade: String,
    /// The lowest mark in the band.
    pub min_marks: i32,
}

impl Grading {
    /// Parses `GRADE_BANDS` (`grade:lowest mark` pairs separated by commas,
    /// e.g. `A:80,B:70,U:0`) and checks the pass mark. Every mark must fall
    /// in exactly one band: the lowest marks are distinct, within 0..=100,
    /// and one of them is 0. The message says what is wrong.
    pub fn new(pass_mark: i32, bands: &str) -> Result<Self, String> {
        if !(0..=MAX_MARKS).contains(&pass_mark) {
            return Err(format!(
                "must be between 0 and {MAX_MARKS}, got {pass_mark}"
            ));
        }
        let mut parsed = Vec::new();
        for pair in bands.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (grade, min) = pair
                .split_once(':')
                .ok_or_else(|| format!("`{pair}` is not `grade:lowest mark`"))?;
            let grade = grade.trim();
            let min_marks: i32 = min
                .trim()
                .parse()
                .map_err(|_| format!("`{min}` in `{pair}` is not a whole number"))?;
            if grade.is_empty() || grade.len() > 16 {
                return Err(format!(
                    "`{pair}`: a grade is 1 to 16 characters before the colon"
                ));
            }
            if !(0..=MAX_MARKS).contains(&min_marks) {
                return Err(format!("`{pair}`: the lowest mark must be 0..={MAX_MARKS}"));
            }
            parsed.push(Band {
                grade: grade.to_owned(),
                min_marks,
            });
        }
        parsed.sort_by_key(|band| std::cmp::Reverse(band.min_marks));
        if parsed.windows(2).any(|w| w[0].min_marks == w[1].min_marks) {
            return Err("two bands start at the same mark".into());
        }
        if parsed.last().map(|b| b.min_marks) != Some(0) {
            return Err("one band must start at 0 so every mark has a grade".into());
        }
        Ok(Self {
            pass_mark,
            bands: parsed,
        })
    }

    /// The statistics of `exam_year` from its `(marks, results)` counts
    /// (any order; zero counts ignored).
    pub fn statistics(&self, exam_year: i32, counts: &[(i32, i64)]) -> YearStatistics {
        let mut counts: Vec<(i32, i64)> = counts.iter().copied().filter(|c| c.1 > 0).collect();
        counts.sort_unstable();
        let results: i64 = counts.iter().map(|c| c.1).sum();
        let total_marks: i64 = counts.iter().map(|(m, n)| i64::from(*m) * n).sum();
        let passed: i64 = counts
            .iter()
            .filter(|(m, _)| *m >= self.pass_mark)
            .map(|c| c.1)
            .sum();
        let bands = self
            .bands
            .iter()
            .enumerate()
            .map(|(i, band)| {
                let max_marks = match i {
                    0 => MAX_MARKS,
                    _ => self.bands[i - 1].min_marks - 1,
                };
                BandCount {
                    grade: band.grade.clone(),
                    min_marks: band.min_marks,
                    max_marks,
                    results: counts
                        .iter()
                        .filter(|(m, _)| (band.min_marks..=max_marks).contains(m))
                        .map(|c| c.1)
                        .sum(),
                }
            })
            .collect();
        let share = |part: i64| (results > 0).then(|| part as f64 / results as f64);
        YearStatistics {
            exam_year,
            results,
            mean: share(total_marks),
            median: median(&counts, results),
            pass_mark: self.pass_mark,
            pass_rate: share(passed),
            bands,
        }
    }
}

/// The median as PostgreSQL's `percentile_cont(0.5)` computes it: the
/// middle mark, or the mean of the two middle marks.
fn median(sorted_counts: &[(i32, i64)], results: i64) -> Option<f64> {
    if results == 0 {
        return None;
    }
    // The marks at 0-based positions lo and hi of the sorted results.
    let (lo, hi) = ((results - 1) / 2, results / 2);
    let at = |position: i64| {
        let mut seen = 0;
        for (marks, n) in sorted_counts {
            seen += n;
            if position < seen {
                return f64::from(*marks);
            }
        }
        f64::from(MAX_MARKS)
    };
    Some((at(lo) + at(hi)) / 2.0)
}

/// `GET /results/{exam_year}/statistics`'s body.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct YearStatistics {
    /// The exam year.
    pub exam_year: i32,
    /// How many results the year has.
    pub results: i64,
    /// Mean marks; `null` without results.
    pub mean: Option<f64>,
    /// Median marks; `null` without results.
    pub median: Option<f64>,
    /// The pass mark applied.
    pub pass_mark: i32,
    /// Share of results at or above the pass mark (0..1); `null` without results.
    pub pass_rate: Option<f64>,
    /// Results per grade band, best first.
    pub bands: Vec<BandCount>,
}

/// How many results fall in one grade band.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BandCount {
    /// The grade.
    pub grade: String,
    /// Lowest mark of the band.
    pub min_marks: i32,
    /// Highest mark of the band.
    pub max_marks: i32,
    /// Results in the band.
    pub results: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default() -> Grading {
        Grading::new(DEFAULT_PASS_MARK, DEFAULT_GRADE_BANDS).unwrap()
    }

    #[test]
    fn the_default_bands_cover_every_mark_once() {
        let grading = default();
        let every_mark: Vec<(i32, i64)> = (0..=MAX_MARKS).map(|m| (m, 1)).collect();
        let stats = grading.statistics(2024, &every_mark);
        assert_eq!(stats.results, 101);
        assert_eq!(stats.bands.iter().map(|b| b.results).sum::<i64>(), 101);
        assert_eq!(stats.bands[0].max_marks, 100);
        assert_eq!(stats.bands.last().unwrap().min_marks, 0);
    }

    #[test]
    fn mean_median_and_pass_rate_follow_the_counts() {
        let stats = default().statistics(2024, &[(30, 1), (50, 2), (90, 1)]);
        assert_eq!(stats.mean, Some(55.0));
        assert_eq!(stats.median, Some(50.0));
        assert_eq!(stats.pass_rate, Some(0.75));
        let even = default().statistics(2024, &[(40, 1), (61, 1)]);
        assert_eq!(even.median, Some(50.5));
    }

    #[test]
    fn a_year_without_results_has_no_averages() {
        let stats = default().statistics(2024, &[(10, 0)]);
        assert_eq!((stats.results, stats.mean, stats.median), (0, None, None));
        assert_eq!(stats.pass_rate, None);
    }

    #[test]
    fn bands_that_leave_marks_without_a_grade_are_refused() {
        assert!(Grading::new(40, "A:80,B:70").is_err());
        assert!(Grading::new(40, "A:80,B:80,U:0").is_err());
        assert!(Grading::new(40, "A:101,U:0").is_err());
        assert!(Grading::new(40, "A80,U:0").is_err());
        assert!(Grading::new(101, "U:0").is_err());
        assert_eq!(
            Grading::new(40, " U:0 , P:40 ").unwrap().bands[0].grade,
            "P"
        );
    }
}
