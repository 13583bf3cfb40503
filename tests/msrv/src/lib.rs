//! The check behind `tests/declared_rust_version.rs`: for each workspace crate, the highest
//! `rust-version` among the packages it builds (normal and build dependencies, transitively, as
//! `cargo metadata` resolves them from Cargo.lock) must not exceed the crate's own declared
//! `rust-version`. Only the installed toolchain exists on the project's machines, so building
//! with exactly the declared one is not possible there; this keeps the declaration honest.
//!
//! The resolve `cargo metadata` reports unifies features across the workspace and includes
//! every target platform, so the bound is conservative: a crate may be held to a dependency
//! that only another crate's features or another platform pull in.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

/// A Rust version as `rust-version` writes it: `1.88` or `1.88.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RustVersion(pub u64, pub u64, pub u64);

impl RustVersion {
    /// Parses `MAJOR.MINOR[.PATCH]`; `None` for anything else.
    pub fn parse(text: &str) -> Option<RustVersion> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = match parts.next() {
            Some(p) => p.parse().ok()?,
            None => 0,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(RustVersion(major, minor, patch))
    }
}

impl fmt::Display for RustVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// A workspace crate whose declared `rust-version` is lower than a dependency needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The workspace crate.
    pub krate: String,
    /// What it declares (`None`: nothing).
    pub declared: Option<RustVersion>,
    /// The dependency that needs the most, and what it needs.
    pub needed_by: String,
    /// What that dependency declares.
    pub needed: RustVersion,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let declared = self
            .declared
            .map_or_else(|| "no rust-version".to_string(), |v| v.to_string());
        write!(
            f,
            "{} declares {declared}, but its dependency {} needs {}",
            self.krate, self.needed_by, self.needed
        )
    }
}

/// Why the metadata could not be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMetadata(pub String);

impl fmt::Display for BadMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unexpected `cargo metadata` output: {}", self.0)
    }
}

impl std::error::Error for BadMetadata {}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a Value, BadMetadata> {
    v.get(name)
        .ok_or_else(|| BadMetadata(format!("missing `{name}`")))
}

fn array<'a>(v: &'a Value, name: &str) -> Result<&'a Vec<Value>, BadMetadata> {
    field(v, name)?
        .as_array()
        .ok_or_else(|| BadMetadata(format!("`{name}` is not an array")))
}

fn string<'a>(v: &'a Value, name: &str) -> Result<&'a str, BadMetadata> {
    field(v, name)?
        .as_str()
        .ok_or_else(|| BadMetadata(format!("`{name}` is not a string")))
}

/// The names of the packages `member` (a workspace crate's name) builds with: its normal and
/// build dependencies, transitively.
pub fn normal_dependencies(
    metadata: &Value,
    member: &str,
) -> Result<BTreeSet<String>, BadMetadata> {
    let mut names = BTreeMap::new();
    for p in array(metadata, "packages")? {
        names.insert(string(p, "id")?, string(p, "name")?);
    }
    let deps = dependency_graph(metadata)?;
    let root = array(metadata, "workspace_members")?
        .iter()
        .filter_map(Value::as_str)
        .find(|id| names.get(id) == Some(&member))
        .ok_or_else(|| BadMetadata(format!("no workspace member {member}")))?;
    let mut seen = BTreeSet::new();
    let mut stack = deps.get(root).cloned().unwrap_or_default();
    while let Some(id) = stack.pop() {
        if seen.insert(id) {
            stack.extend(deps.get(id).into_iter().flatten());
        }
    }
    Ok(seen
        .into_iter()
        .filter_map(|id| names.get(id).map(|n| n.to_string()))
        .collect())
}

/// Each package's normal and build dependencies (dev-dependencies build only its tests).
fn dependency_graph(metadata: &Value) -> Result<BTreeMap<&str, Vec<&str>>, BadMetadata> {
    let mut deps: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for node in array(field(metadata, "resolve")?, "nodes")? {
        let mut out = Vec::new();
        for dep in array(node, "deps")? {
            let builds = array(dep, "dep_kinds")?.iter().any(|k| {
                matches!(k.get("kind"), None | Some(Value::Null))
                    || k.get("kind").and_then(Value::as_str) == Some("build")
            });
            if builds {
                out.push(string(dep, "pkg")?);
            }
        }
        deps.insert(string(node, "id")?, out);
    }
    Ok(deps)
}

/// Checks every workspace member in `cargo metadata --format-version 1` output; returns the
/// violations (empty: every declaration holds).
pub fn check(metadata: &Value) -> Result<Vec<Violation>, BadMetadata> {
    let mut packages = BTreeMap::new();
    for p in array(metadata, "packages")? {
        let version = match p.get("rust_version").and_then(Value::as_str) {
            Some(text) => Some(
                RustVersion::parse(text)
                    .ok_or_else(|| BadMetadata(format!("rust_version {text:?}")))?,
            ),
            None => None,
        };
        packages.insert(string(p, "id")?, (string(p, "name")?, version));
    }
    let deps = dependency_graph(metadata)?;
    let mut violations = Vec::new();
    for member in array(metadata, "workspace_members")? {
        let member = member
            .as_str()
            .ok_or_else(|| BadMetadata("workspace member id".into()))?;
        let (name, declared) = *packages
            .get(member)
            .ok_or_else(|| BadMetadata(format!("unknown member {member}")))?;
        let mut seen = BTreeSet::new();
        let mut stack = deps.get(member).cloned().unwrap_or_default();
        let mut worst: Option<(RustVersion, &str)> = None;
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            if let Some((dep_name, Some(v))) = packages.get(id) {
                if worst.is_none_or(|(w, _)| *v > w) {
                    worst = Some((*v, dep_name));
                }
            }
            stack.extend(deps.get(id).into_iter().flatten());
        }
        if let Some((needed, needed_by)) = worst {
            if declared.is_none_or(|d| d < needed) {
                violations.push(Violation {
                    krate: name.to_string(),
                    declared,
                    needed_by: needed_by.to_string(),
                    needed,
                });
            }
        }
    }
    Ok(violations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn metadata(declared: &str) -> Value {
        json!({
            "packages": [
                {"id": "app", "name": "app", "rust_version": declared},
                {"id": "lib", "name": "lib", "rust_version": "1.80"},
                {"id": "deep", "name": "deep", "rust_version": "1.88.0"},
                {"id": "tool", "name": "tool", "rust_version": "1.95"},
                {"id": "gen", "name": "gen", "rust_version": "1.70"}
            ],
            "workspace_members": ["app"],
            "resolve": {"nodes": [
                {"id": "app", "deps": [
                    {"pkg": "lib", "dep_kinds": [{"kind": null}]},
                    {"pkg": "tool", "dep_kinds": [{"kind": "dev"}]},
                    {"pkg": "gen", "dep_kinds": [{"kind": "build"}]}
                ]},
                {"id": "lib", "deps": [{"pkg": "deep", "dep_kinds": [{"kind": null}]}]},
                {"id": "deep", "deps": []},
                {"id": "tool", "deps": []},
                {"id": "gen", "deps": []}
            ]}
        })
    }

    #[test]
    fn a_transitive_dependency_raises_the_bound_and_dev_dependencies_do_not() {
        assert_eq!(check(&metadata("1.88")).unwrap(), vec![]);
        let too_low = check(&metadata("1.85")).unwrap();
        assert_eq!(
            too_low,
            vec![Violation {
                krate: "app".into(),
                declared: Some(RustVersion(1, 85, 0)),
                needed_by: "deep".into(),
                needed: RustVersion(1, 88, 0),
            }]
        );
        assert_eq!(
            too_low[0].to_string(),
            "app declares 1.85.0, but its dependency deep needs 1.88.0"
        );
    }

    #[test]
    fn the_normal_closure_follows_normal_and_build_edges_only() {
        let names = normal_dependencies(&metadata("1.88"), "app").unwrap();
        let expected: BTreeSet<String> = ["lib", "deep", "gen"].map(String::from).into();
        assert_eq!(names, expected);
        assert!(normal_dependencies(&metadata("1.88"), "missing").is_err());
    }

    #[test]
    fn versions_parse_and_order_numerically() {
        assert_eq!(RustVersion::parse("1.88"), Some(RustVersion(1, 88, 0)));
        assert_eq!(RustVersion::parse("1.9.3"), Some(RustVersion(1, 9, 3)));
        assert!(RustVersion::parse("1.9").unwrap() < RustVersion::parse("1.10").unwrap());
        for bad in ["", "1", "1.x", "1.2.3.4", "-1.2"] {
            assert_eq!(RustVersion::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn malformed_metadata_is_an_error() {
        assert!(check(&json!({})).is_err());
        let mut m = metadata("1.88");
        m["packages"][0]["rust_version"] = json!("soon");
        assert!(check(&m).is_err());
    }
}
