//! `list-results`: GET /results?exam_year=Y&after=R&limit=N: keyset pages of one year.
//!
//! A thin binary: it names its route and handler; the shared library does
//! the rest (configuration, pool, telemetry, serving, graceful shutdown).

use exam_results::operations::list_results;
use exam_results::server::{run, Function};
use exam_results::Access;

fn main() -> std::process::ExitCode {
    run(Function {
        name: "list-results",
        access: Access::Read,
        route: list_results::ROUTE,
        routes: list_results::routes,
    })
}
