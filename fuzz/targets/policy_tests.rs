//! A policy test file (`wisp test`) through its parser and validation.

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let issuers = ["demo".to_owned(), "kubernetes".to_owned()];
    let _ = wisp::policy_tests::parse(text, std::path::Path::new("tests.yaml"), &issuers);
}
