//! `create-results-batch`: POST /results/batches: loads a year's results from
//! a CSV or NDJSON body, all or nothing (board staff, token required).
//!
//! A thin binary: its operation module declares the function (route, method,
//! access, handler); the shared library does the rest (configuration, pool,
//! telemetry, serving, graceful shutdown).

fn main() -> std::process::ExitCode {
    exam_results::server::run(exam_results::operations::create_results_batch::FUNCTION)
}
