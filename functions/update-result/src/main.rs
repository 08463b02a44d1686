//! `update-result`: PUT /results/{exam_year}/{roll_number}: corrects marks (token required).
//!
//! A thin binary: it names its route and handler; the shared library does
//! the rest (configuration, pool, telemetry, serving, graceful shutdown).

use exam_results::operations::update_result;
use exam_results::server::{run, Function};
use exam_results::Access;

fn main() -> std::process::ExitCode {
    run(Function {
        name: "update-result",
        access: Access::Write,
        route: update_result::ROUTE,
        routes: update_result::routes,
    })
}
