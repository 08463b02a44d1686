//! `results-page`: GET /: the public results page, and its form answered
//! without JavaScript.
//!
//! A thin binary: its operation module declares the function (route, method,
//! access, handler); the shared library does the rest (configuration, pool,
//! telemetry, serving, graceful shutdown).

fn main() -> std::process::ExitCode {
    exam_results::server::run(exam_results::operations::results_page::FUNCTION)
}
