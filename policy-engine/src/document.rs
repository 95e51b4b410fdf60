//! Policy documents: YAML in Kubernetes style, one or more per file
//! (separated by `---`), parsed strictly: an unknown field, a wrong type or a
//! bad value is an error naming the file, line, column and field.
//!
//! ```yaml
//! apiVersion: tapwire.io/v1
//! kind: NetworkPolicy            # or RuntimePolicy
//! metadata: {name: web-egress, namespace: shop}
//! spec:
//!   mode: enforce                # or audit
//!   selector: {matchLabels: {app: web}}   # namespace defaults to metadata.namespace
//!   egress:                      # connections the selected pods make
//!     - name: to-db
//!       action: allow            # allow (the default) or deny
//!       to: [{pod: {matchLabels: {app: db}}}, {cidr: 10.96.0.0/12}, {dnsName: "*.example.com"}]
//!       ports: [5432]
//!       protocols: [tcp]
//!       when: 'dst.labels.tier == "primary"'   # optional KFL condition (tapwire_schemas::kfl)
//!   ingress: []                  # connections to the selected pods, with `from`
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Kind {
    /// Connections.
    NetworkPolicy,
    /// Processes and files.
    RuntimePolicy,
}

/// A policy document.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Document {
    /// Must be `tapwire.io/v1`.
    pub api_version: String,
    /// `NetworkPolicy` or `RuntimePolicy`.
    pub kind: Kind,
    /// Name and namespace.
    pub metadata: Metadata,
    /// The policy.
    pub spec: Spec,
}

/// Name and namespace of a policy.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Policy name.
    pub name: String,
    /// Namespace; the selector's default.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// Audit or enforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    /// Violations are reported (Audited).
    Audit,
    /// Violations are blocked where the node enforces them (Blocked),
    /// otherwise reported as not prevented (NotPrevented).
    Enforce,
}

/// Pods by namespace and labels.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodSelector {
    /// Namespace; `*` for any. Defaults to the policy's namespace for the
    /// policy selector, to any for peers.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels the pod must have.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// The body of a policy.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    /// Audit or enforce.
    pub mode: PolicyMode,
    /// Which pods the policy covers.
    #[serde(default)]
    pub selector: PodSelector,
    /// Network: connections the covered pods make.
    #[serde(default)]
    pub egress: Vec<NetworkRule>,
    /// Network: connections to the covered pods.
    #[serde(default)]
    pub ingress: Vec<NetworkRule>,
    /// Runtime: rules for processes and files.
    #[serde(default)]
    pub rules: Vec<RuntimeRule>,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Allowed; once a direction has allow rules, what none allows is a
    /// violation.
    #[default]
    Allow,
    /// A violation when it matches.
    Deny,
}

/// A peer of a connection.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Peer {
    /// Pods.
    #[serde(default)]
    pub pod: Option<PodSelector>,
    /// Addresses.
    #[serde(default)]
    pub cidr: Option<String>,
    /// DNS names; `*.example.com` matches subdomains.
    #[serde(default)]
    pub dns_name: Option<String>,
}

/// A network rule.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkRule {
    /// Rule name, shown in verdicts.
    pub name: String,
    /// Allow or deny.
    #[serde(default)]
    pub action: Action,
    /// Egress peers (any when empty).
    #[serde(default)]
    pub to: Vec<Peer>,
    /// Ingress peers (any when empty).
    #[serde(default)]
    pub from: Vec<Peer>,
    /// Ports of the accepting side (any when empty).
    #[serde(default)]
    pub ports: Vec<u16>,
    /// `tcp`, `udp` (any when empty).
    #[serde(default)]
    pub protocols: Vec<String>,
    /// KFL condition on the event, e.g. `dst.port >= 1024`.
    #[serde(default)]
    pub when: Option<String>,
}

/// File operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileOp {
    /// file_open
    Open,
    /// file_create
    Create,
    /// file_write
    Write,
    /// file_delete
    Delete,
    /// file_chmod
    Chmod,
    /// file_chown
    Chown,
    /// file_rename
    Rename,
}

/// Files and operations a runtime rule covers.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileMatch {
    /// Glob patterns (`/etc/**`).
    pub paths: Vec<String>,
    /// Operations (any when empty).
    #[serde(default)]
    pub operations: Vec<FileOp>,
}

/// A runtime rule.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeRule {
    /// Rule name, shown in verdicts.
    pub name: String,
    /// Allow or deny.
    #[serde(default)]
    pub action: Action,
    /// Executables (glob patterns on the binary path) for process events.
    #[serde(default)]
    pub executables: Vec<String>,
    /// Files for file events.
    #[serde(default)]
    pub files: Option<FileMatch>,
    /// KFL condition on the event.
    #[serde(default)]
    pub when: Option<String>,
}

/// A document that cannot be used, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct DocumentError {
    /// The file.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// What is wrong, naming the field.
    pub message: String,
}

/// Parses every document of a YAML text; `file` names it in errors. A
/// document of blank lines and comments only (a file with every policy
/// removed, a trailing `---`) holds no policy.
pub fn parse(file: &str, text: &str) -> Result<Vec<Document>, DocumentError> {
    let mut out = Vec::new();
    // Documents one by one, split at `---` lines, so that an empty one (a
    // file of comments only, a trailing `---`) holds no policy, as kubectl
    // reads them; errors keep the file's line numbers.
    let mut chunks: Vec<(usize, String)> = vec![(0, String::new())];
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("---") {
            chunks.push((i + 1, String::new()));
        } else if let Some((_, chunk)) = chunks.last_mut() {
            chunk.push_str(line);
            chunk.push('\n');
        }
    }
    for (offset, chunk) in chunks {
        let empty = chunk.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#')
        });
        if empty {
            continue;
        }
        let de = serde_norway::Deserializer::from_str(&chunk);
        let doc = Document::deserialize(de).map_err(|e| {
            let (line, column) = e
                .location()
                .map_or((0, 0), |l| (l.line() + offset, l.column()));
            DocumentError {
                file: file.to_owned(),
                line,
                column,
                message: e.to_string().replace(
                    &format!("line {}", e.location().map_or(0, |l| l.line())),
                    &format!("line {line}"),
                ),
            }
        })?;
        if doc.api_version != "tapwire.io/v1" {
            return Err(DocumentError {
                file: file.to_owned(),
                line: 0,
                column: 0,
                message: format!(
                    "apiVersion: expected tapwire.io/v1, got {:?} (policy {})",
                    doc.api_version, doc.metadata.name
                ),
            });
        }
        out.push(doc);
    }
    Ok(out)
}
