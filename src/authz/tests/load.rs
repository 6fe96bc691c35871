use std::path::Path;

use super::super::{Authorizer, Diagnostic};
use super::{dir_with, load_files, shipped_policies, shipped_schema};

fn file_name(diagnostic: &Diagnostic) -> &str {
    diagnostic
        .file
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("")
}

#[test]
fn shipped_policies_load_without_diagnostics_or_warnings() {
    let authorizer = Authorizer::load(&shipped_schema(), &shipped_policies())
        .unwrap_or_else(|diagnostics| panic!("{diagnostics:#?}"));
    assert!(
        authorizer.warnings().is_empty(),
        "{:#?}",
        authorizer.warnings()
    );
    assert_eq!(
        authorizer.policy_ids(),
        [
            "admin-area-admins-only",
            "admins-write-api",
            "frontend-reads-api"
        ]
    );
}

#[test]
fn empty_directory_loads_with_no_policies() {
    let authorizer = load_files(&[]).unwrap();
    assert_eq!(authorizer.policy_count(), 0);
}

#[test]
fn policies_without_id_are_named_by_file_and_index_and_other_files_are_ignored() {
    let dir = dir_with(&[
        (
            "a.cedar",
            "permit (principal, action, resource);\n@id(\"named\") permit (principal, action, resource);\npermit (principal, action, resource);",
        ),
        ("b.cedar", "forbid (principal, action, resource);"),
        ("notes.txt", "not cedar"),
        ("b.cedar.bak", "not cedar either"),
    ]);
    std::fs::create_dir(dir.path().join("sub.cedar")).unwrap();
    std::fs::write(dir.path().join("sub.cedar/c.cedar"), "syntax error").unwrap();
    let authorizer = Authorizer::load(&shipped_schema(), dir.path()).unwrap();
    assert_eq!(
        authorizer.policy_ids(),
        ["a.cedar#0", "a.cedar#2", "b.cedar#0", "named"]
    );
    assert_eq!(authorizer.policy_count(), 4);
}

#[test]
fn typo_in_attribute_is_reported_at_its_file_and_line() {
    let policy = "// orders\n@id(\"orders\")\npermit (principal, action, resource)\nwhen { principal.subb == \"x\" };\n";
    let diagnostics = load_files(&[
        ("a.cedar", "permit (principal, action, resource);"),
        ("orders.cedar", policy),
    ])
    .unwrap_err();
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    let diagnostic = &diagnostics[0];
    assert_eq!(file_name(diagnostic), "orders.cedar");
    assert_eq!((diagnostic.line, diagnostic.column), (4, 8), "{diagnostic}");
    assert!(diagnostic.message.contains("subb"), "{diagnostic}");
    assert!(
        diagnostic.message.contains("orders"),
        "names the policy: {diagnostic}"
    );
}

#[test]
fn syntax_error_is_reported_at_its_line_and_column() {
    let policy = "permit (principal, action, resource);\n\npermit (principal, action, resource)\nwhen { principal.sub == };\n";
    let diagnostics = load_files(&[("bad.cedar", policy)]).unwrap_err();
    let diagnostic = &diagnostics[0];
    assert_eq!(file_name(diagnostic), "bad.cedar");
    assert_eq!(
        (diagnostic.line, diagnostic.column),
        (4, 25),
        "{diagnostic}"
    );
}

#[test]
fn every_problem_in_every_file_is_reported() {
    let diagnostics = load_files(&[
        ("a.cedar", "permit (principal, action, resource) when { principal.nope };"),
        ("b.cedar", "permit (principal, action, resource) when {"),
        ("c.cedar", "permit (principal, action, resource) when { resource.nope };\npermit (principal, action == Action::\"FETCH\", resource);"),
    ])
    .unwrap_err();
    let files: Vec<&str> = diagnostics.iter().map(file_name).collect();
    assert_eq!(
        files,
        ["a.cedar", "b.cedar", "c.cedar", "c.cedar"],
        "{diagnostics:#?}"
    );
    assert_eq!(diagnostics[3].line, 2);
}

#[test]
fn schema_syntax_error_is_reported_at_its_schema_line() {
    let dir = dir_with(&[(
        "broken.cedarschema",
        "// schema\nentity Workload {\n  sub: String\n  iss: String\n};\n",
    )]);
    let schema = dir.path().join("broken.cedarschema");
    let diagnostics = Authorizer::load(&schema, dir.path()).unwrap_err();
    let diagnostic = &diagnostics[0];
    assert_eq!(diagnostic.file, schema);
    assert_eq!(diagnostic.line, 4, "{diagnostic}");
    assert!(diagnostic.column > 0, "{diagnostic}");
}

#[test]
fn duplicate_policy_id_across_files_is_an_error_in_the_second_file() {
    let diagnostics = load_files(&[
        (
            "a.cedar",
            "@id(\"same\")\npermit (principal, action, resource);",
        ),
        (
            "b.cedar",
            "\n\n@id(\"same\")\nforbid (principal, action, resource);",
        ),
    ])
    .unwrap_err();
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    assert_eq!(file_name(&diagnostics[0]), "b.cedar");
    assert_eq!(diagnostics[0].line, 3);
    assert!(diagnostics[0]
        .message
        .contains("duplicate policy id `same`"));
}

#[test]
fn explicit_id_colliding_with_a_generated_one_is_an_error() {
    let diagnostics = load_files(&[
        ("a.cedar", "permit (principal, action, resource);"),
        (
            "b.cedar",
            "@id(\"a.cedar#0\")\npermit (principal, action, resource);",
        ),
    ])
    .unwrap_err();
    assert!(
        diagnostics[0].message.contains("duplicate"),
        "{diagnostics:#?}"
    );
}

#[test]
fn templates_are_rejected() {
    let diagnostics = load_files(&[(
        "t.cedar",
        "permit (principal, action, resource);\npermit (principal == ?principal, action, resource);",
    )])
    .unwrap_err();
    assert_eq!(diagnostics[0].line, 2, "{diagnostics:#?}");
    assert!(diagnostics[0].message.contains("templates"));
}

#[test]
fn missing_directory_and_schema_are_reported() {
    let missing = Path::new("/nonexistent/wisp");
    let diagnostics = Authorizer::load(&missing.join("wisp.cedarschema"), missing).unwrap_err();
    assert_eq!(diagnostics.len(), 2, "{diagnostics:#?}");
    assert!(diagnostics
        .iter()
        .all(|d| d.message.starts_with("cannot read")));
}

#[test]
fn schema_that_does_not_fit_the_model_is_an_error() {
    let schema =
        "entity Workload { sub: String, iss: String, tags: Set<String>, authn: String };\n\
                  entity Route { path: String };\n\
                  action GET appliesTo { principal: [Workload], resource: [Route] };";
    let dir = dir_with(&[("s.cedarschema", schema)]);
    let diagnostics = Authorizer::load(&dir.path().join("s.cedarschema"), dir.path()).unwrap_err();
    assert!(
        diagnostics[0].message.contains("does not fit wisp's model"),
        "{diagnostics:#?}"
    );
}

#[test]
fn action_with_the_wrong_context_is_an_error() {
    let schema = "entity Workload { sub: String, iss: String, tags: Set<String>, authn: String };\n\
                  entity Route { path: String, host: String };\n\
                  action GET appliesTo { principal: [Workload], resource: [Route], context: { method: Long } };";
    let dir = dir_with(&[("s.cedarschema", schema)]);
    let diagnostics = Authorizer::load(&dir.path().join("s.cedarschema"), dir.path()).unwrap_err();
    assert!(
        diagnostics[0].message.contains("action `GET`"),
        "{diagnostics:#?}"
    );
}

#[test]
fn diagnostics_print_as_file_line_column_message() {
    let diagnostic = Diagnostic {
        file: "policies/a.cedar".into(),
        line: 3,
        column: 7,
        message: "bad".to_owned(),
    };
    assert_eq!(diagnostic.to_string(), "policies/a.cedar:3:7: bad");
}
