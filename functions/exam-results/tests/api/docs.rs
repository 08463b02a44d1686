//! The published API description matches what the code does.

use std::collections::BTreeSet;

use exam_results::error::ERROR_CODES;
use exam_results::operations::ALL;
use exam_results::Auth;
use serde_norway::Value;

fn openapi() -> Value {
    let text =
        std::fs::read_to_string(crate::support::repo_root().join("docs/openapi.yaml")).unwrap();
    serde_norway::from_str(&text).unwrap()
}

#[test]
fn openapi_lists_every_error_code_and_no_other() {
    let spec = openapi();
    let listed: BTreeSet<&str> = spec["components"]["schemas"]["Error"]["properties"]["error"]
        ["properties"]["code"]["enum"]
        .as_sequence()
        .expect("the Error schema enumerates its codes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(listed, ERROR_CODES.into_iter().collect::<BTreeSet<_>>());
}

#[test]
fn openapi_describes_every_functions_route_method_and_token() {
    let spec = openapi();
    for function in ALL {
        let route = function.route.template();
        let method = function.method.as_str().to_lowercase();
        let operation = &spec["paths"][route][method.as_str()];
        assert!(
            operation.is_mapping(),
            "`{} {route}` ({}) is not documented",
            function.method,
            function.name
        );
        let scheme = match function.auth {
            Auth::Public => None,
            Auth::ReadToken => Some("readToken"),
            Auth::WriteToken => Some("writeToken"),
        };
        let documented = operation["security"].as_sequence().map(|list| {
            list.iter()
                .filter_map(|s| s.as_mapping()?.keys().next()?.as_str())
                .collect::<Vec<_>>()
        });
        assert_eq!(
            documented,
            scheme.map(|s| vec![s]),
            "security of {} in docs/openapi.yaml",
            function.name
        );
        assert_eq!(
            operation["responses"]["401"].is_mapping(),
            scheme.is_some(),
            "a 401 is documented exactly where a token is required ({})",
            function.name
        );
        if let Some(scheme) = scheme {
            assert!(
                spec["components"]["securitySchemes"][scheme].is_mapping(),
                "security scheme {scheme} is not defined"
            );
        }
    }
}
