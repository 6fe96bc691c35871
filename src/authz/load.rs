//! Loading: the schema, every `*.cedar` file of the policy directory, policy
//! ids, strict validation, and a check that the schema fits wisp's model.
//! Every problem becomes a [`Diagnostic`]; loading goes on to find them all.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use cedar_policy::{
    Entities, EntityUid, PolicyId, PolicySet, Request, Schema, ValidationMode, Validator,
};

use super::cache::{DecisionCache, Reads};
use super::diagnostics::{at_offset, error_chain, line_column, push_all, whole_file};
use super::entities::{self, WORKLOAD};
use super::shadow::Shadow;
use super::shape::WorkloadShape;
use super::{slices, Authorizer, AuthorizerOptions, Diagnostic, RequestInfo};

/// Source of [`Authorizer::generation`].
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// One policy file, read.
struct Source {
    path: PathBuf,
    text: String,
}

/// Where a policy came from: its file and the byte offset of its text.
struct Origin {
    source: Rc<Source>,
    offset: usize,
}

/// Everything `load` collects on the way.
#[derive(Default)]
struct Collected {
    policies: PolicySet,
    /// Ids of the policies annotated `@shadow`.
    shadow: HashSet<String>,
    origins: HashMap<String, Origin>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

/// See [`Authorizer::load`].
pub(super) fn load(
    schema_path: &Path,
    dir: &Path,
    options: AuthorizerOptions,
) -> Result<Authorizer, Vec<Diagnostic>> {
    let mut collected = Collected::default();
    let (schema, workload_shape) = match load_schema(schema_path, &mut collected) {
        Some((schema, shape)) => (Some(schema), shape),
        None => (None, None),
    };
    match policy_files(dir) {
        Ok(paths) => {
            for path in paths {
                read_policy_file(path, &mut collected);
            }
        }
        Err(diagnostic) => collected.errors.push(diagnostic),
    }
    let methods = match &schema {
        Some(schema) => {
            validate(schema, &mut collected);
            let methods = methods(schema);
            collected
                .errors
                .extend(check_model(schema, schema_path, &methods));
            methods
        }
        None => HashMap::new(),
    };
    let Collected {
        policies,
        shadow,
        mut errors,
        mut warnings,
        ..
    } = collected;
    match schema {
        Some(schema) if errors.is_empty() => {
            // The cache key must cover what shadow policies read too.
            let reads = Reads::of(&policies);
            let action_entities =
                action_entities(&schema, schema_path).map_err(|diagnostic| vec![diagnostic])?;
            let (policies, shadow) = Shadow::split(
                policies,
                |id| shadow.contains(id),
                &methods,
                &action_entities,
                options,
            )
            .map_err(|message| vec![whole_file(schema_path, message)])?;
            let slices = slices::build(methods, &policies, &action_entities, options)
                .map_err(|message| vec![whole_file(schema_path, message)])?;
            sort(&mut warnings);
            Ok(Authorizer {
                cache: DecisionCache::new(
                    options.decision_cache_entries,
                    options.decision_cache_bytes,
                    reads,
                ),
                schema,
                workload_shape,
                policies,
                shadow,
                slices,
                warnings,
                generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            })
        }
        _ => {
            sort(&mut errors);
            Err(errors)
        }
    }
}

/// The schema's action entities, with their groups as parents.
fn action_entities(schema: &Schema, schema_path: &Path) -> Result<Entities, Diagnostic> {
    schema.action_entities().map_err(|err| {
        whole_file(
            schema_path,
            format!("action entities: {}", error_chain(&err)),
        )
    })
}

fn sort(diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    diagnostics.dedup();
}

fn read_text(path: &Path) -> Result<String, Diagnostic> {
    std::fs::read_to_string(path).map_err(|err| whole_file(path, format!("cannot read: {err}")))
}

/// The schema, and the shape of `Workload` when the native check understands it.
fn load_schema(path: &Path, collected: &mut Collected) -> Option<(Schema, Option<WorkloadShape>)> {
    let text = match read_text(path) {
        Ok(text) => text,
        Err(diagnostic) => {
            collected.errors.push(diagnostic);
            return None;
        }
    };
    match Schema::from_cedarschema_str(&text) {
        Ok((schema, warnings)) => {
            for warning in warnings {
                push_all(&mut collected.warnings, path, &text, &warning);
            }
            Some((schema, WorkloadShape::from_schema_text(&text)))
        }
        Err(err) => {
            push_all(&mut collected.errors, path, &text, &err);
            None
        }
    }
}

/// The `*.cedar` files directly in `dir`, sorted by name.
fn policy_files(dir: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let unreadable = |err: std::io::Error| whole_file(dir, format!("cannot read directory: {err}"));
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        // `is_file` follows symlinks (Kubernetes ConfigMap mounts are symlinks).
        if path.extension().is_some_and(|ext| ext == "cedar") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

fn read_policy_file(path: PathBuf, collected: &mut Collected) {
    match read_text(&path) {
        Ok(text) => parse_source(&Rc::new(Source { path, text }), collected),
        Err(diagnostic) => collected.errors.push(diagnostic),
    }
}

/// Parses one file and adds its policies under their ids (`@id`, else
/// `<file name>#<index>`).
fn parse_source(source: &Rc<Source>, collected: &mut Collected) {
    let Source { path, text } = source.as_ref();
    let parsed = match PolicySet::from_str(text) {
        Ok(parsed) => parsed,
        Err(err) => {
            push_all(&mut collected.errors, path, text, &err);
            return;
        }
    };
    let file_name = path
        .file_name()
        .map_or_else(String::new, |name| name.to_string_lossy().into_owned());
    // Cedar names a file's statements `policy0`, `policy1`, … in source order,
    // counting templates too; their texts are consecutive slices of the file.
    let statements = parsed.num_of_policies() + parsed.num_of_templates();
    let mut cursor = 0;
    for n in 0..statements {
        let cedar_id = PolicyId::new(format!("policy{n}"));
        if let Some(template) = parsed.template(&cedar_id) {
            let offset = locate(text, &template.to_cedar(), &mut cursor);
            collected.errors.push(at_offset(
                path,
                text,
                offset,
                "templates (policies with `?principal` or `?resource`) are not supported",
            ));
            continue;
        }
        let Some(policy) = parsed.policy(&cedar_id) else {
            continue;
        };
        let offset = policy.to_cedar().map_or(cursor, |policy_text| {
            locate(text, &policy_text, &mut cursor)
        });
        let id = policy
            .annotation("id")
            .map_or_else(|| format!("{file_name}#{n}"), str::to_owned);
        if let Some(first) = collected.origins.get(&id) {
            let first_path = first.source.path.display();
            let (line, _) = line_column(&first.source.text, first.offset);
            collected.errors.push(at_offset(
                path,
                text,
                offset,
                format!("duplicate policy id `{id}` (first used at {first_path}:{line})"),
            ));
            continue;
        }
        match policy.annotation("shadow") {
            None => {}
            Some("") => {
                collected.shadow.insert(id.clone());
            }
            Some(value) => {
                collected.errors.push(at_offset(
                    path,
                    text,
                    offset,
                    format!(
                        "`@shadow` takes no value (found {value:?}): write `@shadow` to evaluate \
                         the policy without enforcing it, or remove the annotation to enforce it"
                    ),
                ));
                continue;
            }
        }
        match collected.policies.add(policy.new_id(PolicyId::new(&id))) {
            Ok(()) => {
                let source = Rc::clone(source);
                collected.origins.insert(id, Origin { source, offset });
            }
            Err(err) => collected
                .errors
                .push(at_offset(path, text, offset, error_chain(&err))),
        }
    }
}

/// Byte offset of `needle` in `text` at or after `cursor`, moving the cursor past it.
fn locate(text: &str, needle: &str, cursor: &mut usize) -> usize {
    let found = text
        .get(*cursor..)
        .and_then(|rest| rest.find(needle))
        .map(|relative| *cursor + relative);
    match found {
        Some(offset) => {
            *cursor = offset + needle.len();
            offset
        }
        None => *cursor,
    }
}

/// Strict validation of the whole set; each error lands in its policy's file.
fn validate(schema: &Schema, collected: &mut Collected) {
    let result =
        Validator::new(schema.clone()).validate(&collected.policies, ValidationMode::Strict);
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for error in result.validation_errors() {
        push_for_policy(&mut errors, collected, error.policy_id().as_ref(), error);
    }
    for warning in result.validation_warnings() {
        push_for_policy(
            &mut warnings,
            collected,
            warning.policy_id().as_ref(),
            warning,
        );
    }
    collected.errors.extend(errors);
    collected.warnings.extend(warnings);
}

fn push_for_policy(
    out: &mut Vec<Diagnostic>,
    collected: &Collected,
    policy_id: &str,
    problem: &dyn miette::Diagnostic,
) {
    match collected.origins.get(policy_id) {
        // Cedar's spans are offsets into the text the policy was parsed from:
        // the whole file.
        Some(origin) => push_all(out, &origin.source.path, &origin.source.text, problem),
        None => out.push(Diagnostic {
            file: PathBuf::new(),
            line: 0,
            column: 0,
            message: problem.to_string(),
        }),
    }
}

/// HTTP method → action: every action of the schema that is not an action group.
fn methods(schema: &Schema) -> HashMap<String, EntityUid> {
    let groups: HashSet<&EntityUid> = schema.action_groups().collect();
    schema
        .actions()
        .filter(|action| !groups.contains(action))
        .map(|action| (action.id().unescaped().to_owned(), action.clone()))
        .collect()
}

/// Checks that what wisp builds per request conforms to the schema, so that a
/// mismatch is a load error rather than a deny for every request (and so the
/// resource needs no per-request validation). The principal's attributes are
/// checked per token: a schema may require claims beyond the built-in ones.
fn check_model(
    schema: &Schema,
    schema_path: &Path,
    methods: &HashMap<String, EntityUid>,
) -> Vec<Diagnostic> {
    let problem = |message: String| {
        whole_file(
            schema_path,
            format!("the schema does not fit wisp's model (README: Cedar model): {message}"),
        )
    };
    let request = RequestInfo {
        method: "GET",
        path: "/",
        host: "localhost",
        query: "",
        source_ip: std::net::IpAddr::from([127, 0, 0, 1]),
        mtls: false,
    };
    let built = entities::uid(WORKLOAD, "wisp-schema-check").and_then(|principal| {
        let route = entities::route_entity(request.path, request.host)?;
        let context = entities::context(&request)?;
        Ok((principal, route, context))
    });
    let (principal, route, context) = match built {
        Ok(built) => built,
        Err(message) => return vec![problem(message)],
    };
    if !schema
        .entity_types()
        .any(|declared| declared == principal.type_name())
    {
        return vec![problem(format!("entity type `{WORKLOAD}` is not declared"))];
    }
    let route_uid = route.uid();
    if let Err(err) = Entities::from_entities([route], Some(schema)) {
        return vec![problem(error_chain(&err))];
    }
    if methods.is_empty() {
        return vec![problem("no actions are declared".to_owned())];
    }
    let mut actions: Vec<(&String, &EntityUid)> = methods.iter().collect();
    actions.sort_by_key(|(name, _)| *name);
    actions
        .into_iter()
        .filter_map(|(name, action)| {
            Request::new(
                principal.clone(),
                action.clone(),
                route_uid.clone(),
                context.clone(),
                Some(schema),
            )
            .err()
            .map(|err| problem(format!("action `{name}`: {}", error_chain(&err))))
        })
        .collect()
}
