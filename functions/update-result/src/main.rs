//! `update-result`: PUT /results/{exam_year}/{roll_number}: corrects marks (token required).
//!
//! A thin binary: its operation module declares the function (route, method,
//! access, handler); the shared library does the rest (configuration, pool,
//! telemetry, serving, graceful shutdown).

fn main() -> std::process::ExitCode {
    exam_results::server::run(exam_results::operations::update_result::FUNCTION)
}
