//! `list-results`: GET /results?exam_year=Y&after=R&limit=N: keyset pages of one year (read token required).
//!
//! A thin binary: its operation module declares the function (route, method,
//! access, handler); the shared library does the rest (configuration, pool,
//! telemetry, serving, graceful shutdown).

fn main() -> std::process::ExitCode {
    exam_results::server::run(exam_results::operations::list_results::FUNCTION)
}
