//! A validation failure located by key path, before the file name is attached.

/// What is wrong, and at which key path (relative to the section being
/// converted; callers prefix their own key with [`Problem::under`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Problem {
    /// Key path such as `jwks.refresh` or `[0]`; empty for "this value".
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// A problem with the value at `key`.
    pub fn at(key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }

    /// A problem with the value being converted itself.
    pub fn here(message: impl Into<String>) -> Problem {
        Problem::at("", message)
    }

    /// Places this problem under `parent` (`jwks` + `refresh` → `jwks.refresh`,
    /// `issuers` + `[0]` → `issuers[0]`).
    #[must_use]
    pub fn under(self, parent: &str) -> Problem {
        let key = match (parent.is_empty(), self.key.is_empty()) {
            (_, true) => parent.to_owned(),
            (true, false) => self.key,
            (false, false) if self.key.starts_with('[') => format!("{parent}{}", self.key),
            (false, false) => format!("{parent}.{}", self.key),
        };
        Problem { key, ..self }
    }
}

/// Key path of list element `index` under `parent`, e.g. `issuers[2]`.
pub(super) fn element(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nests_keys_and_indices_into_one_path() {
        let problem = Problem::at("refresh", "too short")
            .under("jwks")
            .under("[0]")
            .under("issuers");
        assert_eq!(problem.key, "issuers[0].jwks.refresh");
        assert_eq!(Problem::here("x").under("listen").key, "listen");
    }
}
