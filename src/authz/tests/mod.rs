//! Fixtures shared by the authz tests: tiny builders over temp directories.

mod cache;
mod decide;
mod equivalence;
mod load;
mod properties;
mod shadow;
mod shape;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tempfile::TempDir;

use super::{Authorizer, Decision, Diagnostic, RequestInfo};
use crate::identity::{AttrValue, AuthnMethod, Identity, Names};

/// The shipped schema.
fn shipped_schema() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/wisp.cedarschema")
}

/// The shipped policy directory.
fn shipped_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// A temp directory holding `files` (name, content).
fn dir_with(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    dir
}

/// Loads `files` as the policy directory against the shipped schema.
fn load_files(files: &[(&str, &str)]) -> Result<Authorizer, Vec<Diagnostic>> {
    let dir = dir_with(files);
    Authorizer::load(&shipped_schema(), dir.path())
}

/// An authorizer over the shipped schema and one policy file.
fn authorizer(policies: &str) -> Authorizer {
    load_files(&[("policies.cedar", policies)]).unwrap_or_else(|diagnostics| {
        panic!("policies do not load: {diagnostics:#?}");
    })
}

/// An authorizer over `schema` (text) and one policy file.
fn authorizer_with_schema(schema: &str, policies: &str) -> Authorizer {
    let dir = dir_with(&[("wisp.cedarschema", schema), ("policies.cedar", policies)]);
    Authorizer::load(&dir.path().join("wisp.cedarschema"), dir.path())
        .unwrap_or_else(|diagnostics| panic!("policies do not load: {diagnostics:#?}"))
}

/// The shipped demo policies.
fn demo() -> Authorizer {
    Authorizer::load(&shipped_schema(), &shipped_policies()).unwrap()
}

/// A JWT caller with `sub`, no tags, no further attributes.
pub(super) fn identity(sub: &str) -> Identity {
    let iss = "https://issuer.example";
    let uid = format!("{iss}#{sub}");
    let names = Names::<&str> {
        uid: &uid,
        sub,
        iss,
        tags: &[],
    };
    Identity::new(names, Arc::from("example"), AuthnMethod::Jwt, i64::MAX).unwrap()
}

/// `identity` with other names and tags (a tag may not contain `,`).
pub(super) fn renamed<T: AsRef<str>>(
    identity: &Identity,
    uid: &str,
    sub: &str,
    tags: &[T],
) -> Identity {
    let names = Names {
        uid,
        sub,
        iss: identity.iss(),
        tags,
    };
    identity.renamed(names).unwrap()
}

pub(super) fn with_tags<T: AsRef<str>>(identity: Identity, tags: &[T]) -> Identity {
    renamed(&identity, identity.uid(), identity.sub(), tags)
}

fn with_attr(mut identity: Identity, name: &str, value: AttrValue) -> Identity {
    identity.attrs.insert(name.to_owned(), value);
    identity
}

fn request<'a>(method: &'a str, path: &'a str) -> RequestInfo<'a> {
    RequestInfo {
        method,
        path,
        host: "orders.internal",
        query: "",
        source_ip: IpAddr::from([10, 1, 2, 3]),
        mtls: false,
    }
}

/// Builds the principal and decides `method path`.
fn decide(authorizer: &Authorizer, identity: &Identity, method: &str, path: &str) -> Decision {
    let principal = authorizer.principal(identity.clone()).unwrap();
    authorizer.authorize(&principal, &request(method, path))
}
