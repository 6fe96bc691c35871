//! A validation failure located by key path, before the file name is attached,
//! and [`Problems`]: every failure of a section, so one run reports them all.

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

/// Every problem found while converting a section (keys relative to it).
/// Conversion goes on after a problem wherever the rest does not depend on
/// the failed value, so that one run reports every problem of the file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Problems(Vec<Problem>);

impl Problems {
    /// The value, or `None` after recording its problem(s).
    pub fn take<T, P: Into<Problems>>(&mut self, result: Result<T, P>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(problems) => {
                self.0.extend(problems.into().0);
                None
            }
        }
    }

    /// Records a problem.
    pub fn push(&mut self, problem: Problem) {
        self.0.push(problem);
    }

    /// `Ok(value)` when nothing was recorded (else the problems; `value` is
    /// `None` only when something was).
    pub fn finish<T>(self, value: Option<T>) -> Result<T, Problems> {
        match value {
            Some(value) if self.0.is_empty() => Ok(value),
            _ => Err(self),
        }
    }

    /// Places every problem under `parent` (see [`Problem::under`]).
    #[must_use]
    pub fn under(self, parent: &str) -> Problems {
        Problems(self.0.into_iter().map(|p| p.under(parent)).collect())
    }

    /// The problems, in the order found.
    pub fn into_vec(self) -> Vec<Problem> {
        self.0
    }
}

impl From<Problem> for Problems {
    fn from(problem: Problem) -> Problems {
        Problems(vec![problem])
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

    #[test]
    fn problems_collect_every_failure_and_finish_only_when_none() {
        let mut problems = Problems::default();
        assert_eq!(problems.take(Ok::<_, Problem>(1)), Some(1));
        assert_eq!(problems.take(Err::<u8, _>(Problem::at("a", "bad"))), None);
        let nested = Problems::from(Problem::at("b", "worse")).under("x");
        assert_eq!(problems.take(Err::<u8, _>(nested)), None);
        let keys: Vec<_> = problems
            .clone()
            .into_vec()
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(keys, ["a", "x.b"]);
        assert!(problems.finish(Some(1)).is_err());
        assert_eq!(Problems::default().finish(Some(2)), Ok(2));
    }
}
