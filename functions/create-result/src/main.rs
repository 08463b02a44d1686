//! `create-result`: POST /results: creates a result (board staff, token required).
//!
//! A thin binary: it names its route and handler; the shared library does
//! the rest (configuration, pool, telemetry, serving, graceful shutdown).

use exam_results::operations::create_result;
use exam_results::server::{run, Function};
use exam_results::Access;

fn main() -> std::process::ExitCode {
    run(Function {
        name: "create-result",
        access: Access::Write,
        route: create_result::ROUTE,
        routes: create_result::routes,
    })
}
