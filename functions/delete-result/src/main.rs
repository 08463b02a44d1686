//! `delete-result`: DELETE /results/{exam_year}/{roll_number}: removes a result (token required).
//!
//! A thin binary: it names its route and handler; the shared library does
//! the rest (configuration, pool, telemetry, serving, graceful shutdown).

use exam_results::operations::delete_result;
use exam_results::server::{run, Function};
use exam_results::Access;

fn main() -> std::process::ExitCode {
    run(Function {
        name: "delete-result",
        access: Access::Write,
        route: delete_result::ROUTE,
        routes: delete_result::routes,
    })
}
