//! The published API description matches what the code does.

use exam_results::error::ERROR_CODES;
use exam_results::operations::{
    create_result, delete_result, get_result, list_results, update_result,
};

fn openapi() -> String {
    std::fs::read_to_string(crate::support::repo_root().join("docs/openapi.yaml")).unwrap()
}

#[test]
fn openapi_lists_every_error_code_and_no_other() {
    let spec = openapi();
    let enum_line = spec
        .lines()
        .skip_while(|l| !l.contains("code:"))
        .skip_while(|l| !l.contains("enum:"))
        .take_while(|l| !l.contains("message:"))
        .collect::<String>();
    for code in ERROR_CODES {
        assert!(
            enum_line.contains(code),
            "docs/openapi.yaml does not list `{code}`"
        );
    }
    let listed = enum_line.matches(',').count() + 1;
    assert_eq!(
        listed,
        ERROR_CODES.len(),
        "the enum lists codes the code does not have: {enum_line}"
    );
}

#[test]
fn openapi_describes_every_functions_route_and_method() {
    let spec = openapi();
    for (route, method) in [
        (create_result::ROUTE, create_result::ALLOWED),
        (get_result::ROUTE, get_result::ALLOWED),
        (list_results::ROUTE, list_results::ALLOWED),
        (update_result::ROUTE, update_result::ALLOWED),
        (delete_result::ROUTE, delete_result::ALLOWED),
    ] {
        let section: String = spec
            .lines()
            .skip_while(|l| l.trim_end() != format!("  {route}:"))
            .skip(1)
            .take_while(|l| l.starts_with("    ") || l.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            !section.is_empty(),
            "docs/openapi.yaml has no path `{route}`"
        );
        let verb = format!("    {}:", method.to_lowercase());
        assert!(
            section.lines().any(|l| l == verb),
            "`{method} {route}` is not documented"
        );
    }
}
