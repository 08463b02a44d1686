//! `get-result`: GET /results/{exam_year}/{roll_number}: the results-day point read.
//!
//! A thin binary: it names its route and handler; the shared library does
//! the rest (configuration, pool, telemetry, serving, graceful shutdown).

use exam_results::operations::get_result;
use exam_results::server::{run, Function};
use exam_results::Access;

fn main() -> std::process::ExitCode {
    run(Function {
        name: "get-result",
        access: Access::Read,
        route: get_result::ROUTE,
        routes: get_result::routes,
    })
}
