//! A config file (YAML) through the parser and every validation rule.

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Relative paths resolve against the repository's config/ directory.
    let path = super::repo::root().join("config/fuzz.yaml");
    let _ = wisp::config::Config::from_yaml(text, &path);
}
