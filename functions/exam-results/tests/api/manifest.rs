//! `knative/exam-results/functions.yaml` is the one list of the functions:
//! the operation modules, the workspace's binaries and the `Allow` header
//! agree with it.

use std::collections::BTreeSet;

use exam_results::operations::{allow_header, ALL};
use exam_results::route::Route;
use exam_results::{Access, Auth, Function};
use serde::Deserialize;

use crate::support::repo_root;

#[derive(Deserialize)]
struct Manifest {
    functions: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    access: String,
    auth: String,
    method: String,
    route: String,
}

fn manifest() -> Vec<Entry> {
    let path = repo_root().join("knative/exam-results/functions.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_norway::from_str::<Manifest>(&text)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .functions
}

/// A function as the manifest writes it: name, access, auth, method, route.
fn declared(function: &Function) -> [String; 5] {
    let access = match function.access {
        Access::Read => "read",
        Access::Write => "write",
    };
    let auth = match function.auth {
        Auth::Public => "public",
        Auth::ReadToken => "read-token",
        Auth::WriteToken => "write-token",
    };
    [
        function.name,
        access,
        auth,
        function.method.as_str(),
        function.route.template(),
    ]
    .map(str::to_owned)
}

#[test]
fn every_operation_module_declares_its_manifest_entry_and_nothing_else() {
    let listed: BTreeSet<[String; 5]> = manifest()
        .into_iter()
        .map(|e| [e.name, e.access, e.auth, e.method, e.route])
        .collect();
    let modules: BTreeSet<[String; 5]> = ALL.iter().map(declared).collect();
    assert_eq!(
        modules.difference(&listed).collect::<Vec<_>>(),
        Vec::<&[String; 5]>::new(),
        "operation modules that functions.yaml does not list as [name, access, auth, method, route]"
    );
    assert_eq!(
        listed.difference(&modules).collect::<Vec<_>>(),
        Vec::<&[String; 5]>::new(),
        "functions.yaml entries no operation module declares"
    );
    assert_eq!(
        modules.len(),
        ALL.len(),
        "two modules declare the same function"
    );
}

#[test]
fn the_workspace_builds_one_binary_per_manifest_entry_from_its_module() {
    let root = repo_root();
    let cargo = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(
        cargo.contains(r#"members = ["functions/*"]"#),
        "the workspace should take every crate under functions/"
    );
    let mut binaries = BTreeSet::new();
    for dir in std::fs::read_dir(root.join("functions")).unwrap() {
        let dir = dir.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let package = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(
            package.contains(&format!("name = \"{name}\"")),
            "functions/{name}/Cargo.toml should name the package {name}"
        );
        let Ok(main) = std::fs::read_to_string(dir.join("src/main.rs")) else {
            assert_eq!(
                name, "exam-results",
                "only the shared library has no main.rs"
            );
            continue;
        };
        let module = name.replace('-', "_");
        assert!(
            main.contains(&format!("operations::{module}::FUNCTION")),
            "functions/{name}/src/main.rs should serve operations::{module}::FUNCTION"
        );
        binaries.insert(name);
    }
    let listed: BTreeSet<String> = manifest().into_iter().map(|e| e.name).collect();
    assert_eq!(binaries, listed, "workspace binaries vs functions.yaml");
}

#[test]
fn allow_names_every_method_the_manifest_has_on_a_route() {
    let entries = manifest();
    for entry in &entries {
        let mut expected: BTreeSet<&str> = entries
            .iter()
            .filter(|e| e.route == entry.route)
            .map(|e| e.method.as_str())
            .collect();
        if expected.contains("GET") {
            expected.insert("HEAD");
        }
        let route = ALL
            .iter()
            .map(|f| f.route)
            .find(|r| r.template() == entry.route)
            .unwrap_or(Route::new("/not-declared"));
        let allow: BTreeSet<&str> = allow_header(route).split(", ").collect();
        assert_eq!(allow, expected, "Allow on {}", entry.route);
    }
}
