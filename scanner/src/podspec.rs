//! Risky pod settings and image compliance.
//!
//! [`misconfigurations`] reads the security settings the cluster watcher
//! records with a pod ([`PodMetadata::security`]) and lists every risky one
//! as a [`Misconfiguration`] with a stable rule id. [`check`] judges one image
//! against the configured [`Requirements`], from what the scans found about it
//! ([`ImageFacts`]); [`registry`] and [`pinned`] read image references the way
//! container runtimes do.

use std::fmt;

use serde::{Deserialize, Serialize};
use tapwire_schemas::events::{ContainerSecurity, PodMetadata, PodSecurity};

use crate::finding::Severity;

/// A risky setting found in a pod spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Misconfiguration {
    /// Stable rule id (kebab-case), e.g. `privileged-container`.
    pub rule: String,
    /// How bad it is.
    pub severity: Severity,
    /// The container it is about; `None` for pod-level settings.
    pub container: Option<String>,
    /// One sentence: what is set and why it matters.
    pub detail: String,
}

/// The pod record has no security settings to judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoSpec;

impl fmt::Display for NoSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the pod record carries no security settings (watcher older than PodMetadata v3)",
        )
    }
}

impl std::error::Error for NoSpec {}

/// Host paths whose mount gives control of the node (after `/var/run` is
/// read as `/run`, which it links to).
const CRITICAL_HOST_PATHS: &[&str] = &[
    "/",
    "/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/proc",
    "/etc",
    "/var/lib/kubelet",
];

/// Capabilities (without `CAP_`) that let a container take over the node.
const CRITICAL_CAPABILITIES: &[&str] = &[
    "SYS_ADMIN",
    "NET_ADMIN",
    "SYS_PTRACE",
    "SYS_MODULE",
    "DAC_READ_SEARCH",
    "BPF",
    "ALL",
];

/// Every misconfiguration of a pod: pod-level first (`host-pid`,
/// `host-network`, `host-ipc`, one `host-path-mount` per path), then per
/// container in spec order (`privileged-container`, `added-capabilities`,
/// `privilege-escalation-allowed`, `runs-as-root`, `writable-root-filesystem`,
/// `no-resource-limits`, `mutable-image-tag`).
///
/// Fails with [`NoSpec`] when the record carries no security settings.
pub fn misconfigurations(pod: &PodMetadata) -> Result<Vec<Misconfiguration>, NoSpec> {
    let security = pod.security.as_ref().ok_or(NoSpec)?;
    Ok(judge(pod.host_network, security))
}

/// The misconfigurations of a pod's settings.
fn judge(host_network: bool, security: &PodSecurity) -> Vec<Misconfiguration> {
    let mut found = Vec::new();
    let mut shares = |rule: &str, namespace: &str, why: &str| {
        let detail = format!("the pod shares the node's {namespace} namespace: it can {why}");
        found.push(finding(rule, Severity::High, None, detail));
    };
    if security.host_pid {
        let why = "see and signal every process on the node";
        shares("host-pid", "PID", why);
    }
    if host_network {
        let why = "reach node-local services and see the node's traffic";
        shares("host-network", "network", why);
    }
    if security.host_ipc {
        let why = "use the shared memory of the node's processes";
        shares("host-ipc", "IPC", why);
    }
    for path in &security.host_path_volumes {
        let (severity, why) = match critical_host_path(path) {
            true => (
                Severity::Critical,
                "it exposes enough to take over the node",
            ),
            false => (
                Severity::High,
                "its containers can read and may change the files",
            ),
        };
        let detail = format!("the pod mounts the node's path {path}: {why}");
        found.push(finding("host-path-mount", severity, None, detail));
    }
    for container in &security.containers {
        container_rules(security, container, &mut found);
    }
    found
}

/// A [`Misconfiguration`].
fn finding(
    rule: &str,
    severity: Severity,
    container: Option<&str>,
    detail: String,
) -> Misconfiguration {
    let (rule, container) = (rule.to_owned(), container.map(str::to_owned));
    Misconfiguration {
        rule,
        severity,
        container,
        detail,
    }
}

/// The rules about one container, in the order [`misconfigurations`] lists.
fn container_rules(pod: &PodSecurity, c: &ContainerSecurity, found: &mut Vec<Misconfiguration>) {
    let name = c.name.as_str();
    let mut push = |rule: &str, severity: Severity, what: &str| {
        let detail = format!("container {name} {what}");
        found.push(finding(rule, severity, Some(name), detail));
    };
    if c.privileged {
        let what = "runs privileged: it has every capability and the node's devices";
        push("privileged-container", Severity::Critical, what);
    }
    let caps: Vec<String> = c
        .added_capabilities
        .iter()
        .map(|cap| capability(cap))
        .collect();
    let critical: Vec<&str> = caps
        .iter()
        .map(String::as_str)
        .filter(|cap| CRITICAL_CAPABILITIES.contains(cap))
        .collect();
    let (added, worst) = (caps.join(", "), critical.join(", "));
    if !critical.is_empty() {
        let what =
            format!("adds the capabilities {added}, of which {worst} can take over the node");
        push("added-capabilities", Severity::Critical, &what);
    } else if !caps.is_empty() {
        let what = format!("adds the capabilities {added} to the runtime's default set");
        push("added-capabilities", Severity::Medium, &what);
    }
    // Privileged and SYS_ADMIN containers can always escalate (the API
    // refuses allowPrivilegeEscalation: false for them): reported above.
    if !c.privileged && !critical.contains(&"SYS_ADMIN") {
        let why = "its processes can gain privileges through setuid binaries";
        match c.allow_privilege_escalation {
            Some(true) => {
                let what = format!("sets allowPrivilegeEscalation: {why}");
                push("privilege-escalation-allowed", Severity::Medium, &what);
            }
            None => {
                let what = format!("does not set allowPrivilegeEscalation to false: {why}");
                push("privilege-escalation-allowed", Severity::Low, &what);
            }
            Some(false) => {}
        }
    }
    let user = c.run_as_user.or(pod.run_as_user);
    let non_root = c.run_as_non_root.or(pod.run_as_non_root);
    if user == Some(0) {
        let what = "runs as root (runAsUser 0): an escape from it starts as root";
        push("runs-as-root", Severity::Medium, what);
    } else if user.is_none() && non_root != Some(true) {
        let what = "may run as root (no runAsNonRoot, no runAsUser): the image decides";
        push("runs-as-root", Severity::Low, what);
    }
    if !c.read_only_root_filesystem {
        let what = "has a writable root filesystem: an intruder can drop and change files";
        push("writable-root-filesystem", Severity::Low, what);
    }
    let missing = match (&c.cpu_limit, &c.memory_limit) {
        (None, None) => "cpu or memory",
        (None, Some(_)) => "cpu",
        (Some(_), None) => "memory",
        (Some(_), Some(_)) => "",
    };
    if !missing.is_empty() {
        let what = format!("has no {missing} limit: it can starve the other pods of its node");
        push("no-resource-limits", Severity::Low, &what);
    }
    if !pinned(&c.image, None) {
        let tag = tag(&c.image).unwrap_or("latest");
        let severity = match tag {
            "latest" => Severity::High,
            _ => Severity::Medium,
        };
        let why = "the tag can be moved to another image";
        let what = format!("uses {} by the tag {tag}, not by digest: {why}", c.image);
        push("mutable-image-tag", severity, &what);
    }
}

/// A capability name without `CAP_`, upper case.
fn capability(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    upper
        .strip_prefix("CAP_")
        .map(str::to_owned)
        .unwrap_or(upper)
}

/// Whether a host path is, or contains, one that gives control of the node.
fn critical_host_path(path: &str) -> bool {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let mut normal = format!("/{}", parts.join("/"));
    if normal == "/var/run" || normal.starts_with("/var/run/") {
        normal.replace_range(.."/var/run".len(), "/run");
    }
    let inside = format!("{normal}/");
    normal == "/"
        || CRITICAL_HOST_PATHS
            .iter()
            .any(|c| *c == normal || c.starts_with(&inside))
}

/// The tag of an image reference, if it has one.
fn tag(image: &str) -> Option<&str> {
    let name = image.split('@').next().unwrap_or(image);
    name.rsplit('/')
        .next()
        .unwrap_or(name)
        .split_once(':')
        .map(|(_, tag)| tag)
}

/// Whether the image reference is pinned by digest (`@sha256:` and 64 hex
/// digits) or a digest of it is known (`digest` is `Some` and not blank).
pub fn pinned(image: &str, digest: Option<&str>) -> bool {
    let hex = |h: &str| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit());
    let by_reference = image.split_once("@sha256:").is_some_and(|(_, h)| hex(h));
    by_reference || digest.is_some_and(|d| !d.trim().is_empty())
}

/// The registry of an image reference the way container runtimes read it:
/// `nginx` → `docker.io`, `ghcr.io/a/b:1` → `ghcr.io`, `localhost:5000/x` →
/// `localhost:5000`, `registry.k8s.io/pause@sha256:…` → `registry.k8s.io`.
///
/// The first path component is the registry when it has a `.` or a `:`, is
/// `localhost` or has upper-case letters; otherwise the registry is Docker
/// Hub, `docker.io` (which `index.docker.io` also means).
pub fn registry(image: &str) -> &str {
    split_registry(image).0
}

/// The registry and the rest of the reference.
fn split_registry(image: &str) -> (&str, &str) {
    match image.split_once('/') {
        Some(("index.docker.io", rest)) => ("docker.io", rest),
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => ("docker.io", image),
    }
}

/// Whether an `allowed_registries` entry allows the image: it is a prefix of
/// `registry/repository` ending at a `/` or at the end, compared ignoring
/// case; Docker Hub's single names are under `docker.io/library/`.
fn allowed(entry: &str, image: &str) -> bool {
    let entry = entry.trim().trim_end_matches('/');
    let (registry, rest) = split_registry(image);
    let rest = rest.split('@').next().unwrap_or(rest);
    let rest = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => name,
        _ => rest,
    };
    let library = if registry == "docker.io" && !rest.contains('/') {
        "library/"
    } else {
        ""
    };
    let full = format!("{registry}/{library}{rest}");
    match (full.get(..entry.len()), full.get(entry.len()..)) {
        (Some(head), Some(tail)) if !entry.is_empty() => {
            head.eq_ignore_ascii_case(entry) && (tail.is_empty() || tail.starts_with('/'))
        }
        _ => false,
    }
}

/// What an image must meet: a configuration section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Requirements {
    /// Registries (`ghcr.io`) or registry path prefixes (`ghcr.io/acme`)
    /// images may come from; empty allows any.
    pub allowed_registries: Vec<String>,
    /// Images must be pinned by digest, or their digest known.
    pub require_digest: bool,
    /// Images must have no malware finding.
    pub forbid_malware: bool,
    /// Images must have no sensitive-data finding.
    pub forbid_sensitive_data: bool,
    /// The worst misconfiguration allowed in pods running the image; `None`
    /// allows any.
    pub max_misconfiguration: Option<Severity>,
}

impl Default for Requirements {
    fn default() -> Self {
        Requirements {
            allowed_registries: Vec::new(),
            require_digest: true,
            forbid_malware: true,
            forbid_sensitive_data: true,
            max_misconfiguration: Some(Severity::Medium),
        }
    }
}

/// What is known about one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImageFacts<'a> {
    /// The image reference as written in the spec.
    pub image: &'a str,
    /// Its digest, when the runtime reported one.
    pub digest: Option<&'a str>,
    /// How many malware findings it has.
    pub malware: usize,
    /// How many sensitive-data findings it has.
    pub sensitive_data: usize,
    /// The worst misconfiguration of the pods running it.
    pub worst_misconfiguration: Option<Severity>,
}

/// The verdict: compliant or not, with every unmet requirement as a reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compliance {
    /// Whether every requirement is met (`reasons` is empty).
    pub compliant: bool,
    /// One sentence per unmet requirement.
    pub reasons: Vec<String>,
}

/// Judges one image against the requirements.
pub fn check(requirements: &Requirements, facts: &ImageFacts) -> Compliance {
    let image = facts.image;
    let mut reasons = Vec::new();
    let allowed_list = &requirements.allowed_registries;
    if !allowed_list.is_empty() && !allowed_list.iter().any(|entry| allowed(entry, image)) {
        reasons.push(format!(
            "image {image} comes from {}, which is not an allowed registry ({})",
            registry(image),
            allowed_list.join(", ")
        ));
    }
    if requirements.require_digest && !pinned(image, facts.digest) {
        reasons.push(format!(
            "image {image} is not pinned by digest and its digest is unknown"
        ));
    }
    if requirements.forbid_malware && facts.malware > 0 {
        reasons.push(format!(
            "image {image} has {} malware finding(s)",
            facts.malware
        ));
    }
    if requirements.forbid_sensitive_data && facts.sensitive_data > 0 {
        reasons.push(format!(
            "image {image} has {} sensitive-data finding(s)",
            facts.sensitive_data
        ));
    }
    let limit = (
        requirements.max_misconfiguration,
        facts.worst_misconfiguration,
    );
    if let (Some(max), Some(worst)) = limit
        && worst > max
    {
        let (worst, max) = (worst.as_str(), max.as_str());
        let what = format!("a {worst} misconfiguration, above the allowed {max}");
        reasons.push(format!("image {image} runs in a pod with {what}"));
    }
    Compliance {
        compliant: reasons.is_empty(),
        reasons,
    }
}

/// The worst severity among misconfigurations, for
/// [`ImageFacts::worst_misconfiguration`].
pub fn worst(found: &[Misconfiguration]) -> Option<Severity> {
    found.iter().map(|m| m.severity).max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Severity::{Critical, High, Low, Medium};

    const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn hardened() -> PodSecurity {
        let container = ContainerSecurity {
            name: "web".into(),
            image: format!("ghcr.io/acme/web:1.2@sha256:{DIGEST}"),
            privileged: false,
            allow_privilege_escalation: Some(false),
            added_capabilities: vec![],
            run_as_non_root: Some(true),
            run_as_user: Some(1000),
            read_only_root_filesystem: true,
            cpu_limit: Some("500m".into()),
            memory_limit: Some("256Mi".into()),
        };
        PodSecurity {
            host_pid: false,
            host_ipc: false,
            host_path_volumes: vec![],
            run_as_non_root: None,
            run_as_user: None,
            containers: vec![container],
        }
    }

    /// The findings of a hardened pod after `change`.
    fn found(
        change: impl FnOnce(&mut PodSecurity, &mut ContainerSecurity),
    ) -> Vec<Misconfiguration> {
        let mut security = hardened();
        let mut container = security.containers.pop().unwrap();
        change(&mut security, &mut container);
        security.containers.push(container);
        judge(false, &security)
    }

    /// Asserts `change` yields exactly one finding, of `rule` and `severity`;
    /// returns its detail.
    fn expect(
        rule: &str,
        severity: Severity,
        change: impl FnOnce(&mut PodSecurity, &mut ContainerSecurity),
    ) -> String {
        let found = found(change);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(
            (found[0].rule.as_str(), found[0].severity),
            (rule, severity)
        );
        found[0].detail.clone()
    }

    #[test]
    fn hardened_pod_is_clean_and_no_spec_is_an_error() {
        let mut pod = PodMetadata {
            header: Default::default(),
            uid: "u1".into(),
            name: "web-1".into(),
            namespace: "shop".into(),
            ips: vec![],
            host_network: false,
            containers: vec![],
            labels: Default::default(),
            workload: None,
            start_ns: None,
            end_ns: None,
            security: Some(hardened()),
        };
        assert_eq!(misconfigurations(&pod), Ok(vec![]));
        pod.host_network = true;
        assert_eq!(misconfigurations(&pod).unwrap()[0].rule, "host-network");
        pod.security = None;
        assert_eq!(misconfigurations(&pod), Err(NoSpec));
        let message =
            "the pod record carries no security settings (watcher older than PodMetadata v3)";
        assert_eq!(NoSpec.to_string(), message);
    }

    #[test]
    fn pod_level_rules() {
        expect("host-pid", High, |p, _| p.host_pid = true);
        expect("host-ipc", High, |p, _| p.host_ipc = true);
        let found = judge(true, &hardened());
        let got = (found[0].rule.as_str(), found[0].severity, found.len());
        assert_eq!(got, ("host-network", High, 1));
        assert_eq!(found[0].container, None);
    }

    #[test]
    fn host_paths_one_each_critical_ones() {
        let paths = [
            "/data",
            "/etc/localtime",
            "/",
            "/var/run/docker.sock",
            "/run/containerd/containerd.sock",
            "/proc",
            "/etc/",
            "/var/lib/kubelet",
            "/var/run",
            "/var",
        ];
        let found = found(|p, _| p.host_path_volumes = paths.map(String::from).to_vec());
        let severities: Vec<_> = found.iter().map(|m| m.severity).collect();
        let critical = [Critical; 8];
        assert_eq!(severities, [[High, High].as_slice(), &critical].concat());
        for (m, path) in found.iter().zip(paths) {
            assert_eq!(m.rule, "host-path-mount");
            assert!(m.detail.contains(path) && m.container.is_none(), "{m:?}");
        }
    }

    #[test]
    fn container_rules_each() {
        let detail = expect("privileged-container", Critical, |_, c| c.privileged = true);
        assert_eq!(
            detail,
            "container web runs privileged: it has every capability and the node's devices"
        );
        assert_eq!(
            found(|_, c| c.privileged = true)[0].container.as_deref(),
            Some("web")
        );
        expect("privilege-escalation-allowed", Medium, |_, c| {
            c.allow_privilege_escalation = Some(true)
        });
        expect("privilege-escalation-allowed", Low, |_, c| {
            c.allow_privilege_escalation = None
        });
        expect("writable-root-filesystem", Low, |_, c| {
            c.read_only_root_filesystem = false
        });
        for (cpu, memory, missing) in [
            (None, Some("1Gi"), "cpu"),
            (Some("1"), None, "memory"),
            (None, None, "cpu or memory"),
        ] {
            let limits = |_: &mut PodSecurity, c: &mut ContainerSecurity| {
                (c.cpu_limit, c.memory_limit) = (cpu.map(String::from), memory.map(String::from))
            };
            let detail = expect("no-resource-limits", Low, limits);
            assert!(
                detail.contains(&format!("has no {missing} limit")),
                "{detail}"
            );
        }
    }

    #[test]
    fn capabilities_critical_or_medium_any_spelling() {
        for (caps, severity) in [
            ("NET_RAW", Medium),
            ("chown,Cap_Net_Bind_Service", Medium),
            ("SYS_ADMIN", Critical),
            ("cap_sys_ptrace", Critical),
            ("NET_RAW,CAP_NET_ADMIN", Critical),
            ("Bpf", Critical),
            ("all", Critical),
            ("SYS_MODULE", Critical),
            ("dac_read_search", Critical),
        ] {
            let caps: Vec<String> = caps.split(',').map(String::from).collect();
            let detail = expect("added-capabilities", severity, |_, c| {
                c.added_capabilities = caps.clone()
            });
            assert!(detail.contains(&capability(&caps[0])), "{detail}");
        }
        // SYS_ADMIN, like privileged, implies privilege escalation.
        expect("added-capabilities", Critical, |_, c| {
            (c.allow_privilege_escalation, c.added_capabilities) = (None, vec!["SYS_ADMIN".into()])
        });
        expect("privileged-container", Critical, |_, c| {
            (c.allow_privilege_escalation, c.privileged) = (None, true)
        });
    }

    #[test]
    fn runs_as_root_container_overrides_pod() {
        expect("runs-as-root", Medium, |_, c| c.run_as_user = Some(0));
        expect("runs-as-root", Medium, |p, c| {
            (p.run_as_user, c.run_as_user) = (Some(0), None)
        });
        let detail = expect("runs-as-root", Low, |_, c| {
            (c.run_as_user, c.run_as_non_root) = (None, None)
        });
        assert!(detail.contains("may run as root"), "{detail}");
        assert!(found(|p, c| (p.run_as_user, c.run_as_user) = (Some(0), Some(1000))).is_empty());
        assert!(
            found(
                |p, c| (p.run_as_non_root, c.run_as_user, c.run_as_non_root) =
                    (Some(true), None, None)
            )
            .is_empty()
        );
        assert!(found(|_, c| c.run_as_non_root = Some(false)).is_empty());
    }

    #[test]
    fn mutable_image_tags() {
        for (image, severity) in [
            ("nginx", High),
            ("nginx:latest", High),
            ("localhost:5000/app", High),
            ("nginx:1.25", Medium),
            ("localhost:5000/app:v2", Medium),
            ("nginx@sha256:abc", High),
        ] {
            let detail = expect("mutable-image-tag", severity, |_, c| c.image = image.into());
            assert!(detail.contains(image), "{detail}");
        }
        assert!(found(|_, c| c.image = format!("nginx@sha256:{DIGEST}")).is_empty());
    }

    #[test]
    fn pod_level_first_then_containers_in_spec_order() {
        let mut security = hardened();
        (security.host_pid, security.host_path_volumes) = (true, vec!["/data".into()]);
        let mut sidecar = security.containers[0].clone();
        (sidecar.name, sidecar.read_only_root_filesystem) = ("sidecar".into(), false);
        security.containers[0].privileged = true;
        security.containers.push(sidecar);
        let found = judge(true, &security);
        let got: Vec<_> = found
            .iter()
            .map(|m| (m.rule.as_str(), m.container.as_deref()))
            .collect();
        let web_sidecar = [
            ("privileged-container", Some("web")),
            ("writable-root-filesystem", Some("sidecar")),
        ];
        let pod_level = [
            ("host-pid", None),
            ("host-network", None),
            ("host-path-mount", None),
        ];
        assert_eq!(got, [pod_level.as_slice(), &web_sidecar].concat());
        assert_eq!((worst(&found), worst(&[])), (Some(Critical), None));
    }

    #[test]
    fn registries_and_pinning() {
        for (image, expected) in [
            ("nginx", "docker.io"),
            ("nginx:1.25", "docker.io"),
            ("bitnami/redis:7", "docker.io"),
            ("index.docker.io/bitnami/redis", "docker.io"),
            ("docker.io/library/nginx", "docker.io"),
            ("ghcr.io/a/b:1", "ghcr.io"),
            ("localhost:5000/x", "localhost:5000"),
            ("localhost/x", "localhost"),
            ("Registry/x", "Registry"),
            ("registry.k8s.io/pause@sha256:abc", "registry.k8s.io"),
            ("nginx@sha256:abc", "docker.io"),
            ("[::1]:5000/x", "[::1]:5000"),
        ] {
            assert_eq!(registry(image), expected, "{image}");
        }
        assert!(pinned(&format!("nginx:1@sha256:{DIGEST}"), None));
        assert!(!pinned(&format!("nginx@sha256:{}", &DIGEST[1..]), None));
        assert!(!pinned(&format!("nginx@sha256:{}g", &DIGEST[1..]), None));
        assert!(!pinned("nginx:1.25", None) && !pinned("nginx:1.25", Some(" ")));
        assert!(pinned("nginx:1.25", Some("sha256:abc")));
    }

    fn facts(image: &str) -> ImageFacts<'_> {
        let digest = Some("sha256:abc");
        ImageFacts {
            image,
            digest,
            ..ImageFacts::default()
        }
    }

    /// The reasons the default requirements give for a clean image after
    /// `change`; asserts that requirements asking nothing pass it.
    fn unmet(change: impl FnOnce(&mut ImageFacts)) -> Vec<String> {
        let mut facts = facts("nginx:1.25");
        change(&mut facts);
        let none = Requirements {
            allowed_registries: vec![],
            require_digest: false,
            forbid_malware: false,
            forbid_sensitive_data: false,
            max_misconfiguration: None,
        };
        assert!(check(&none, &facts).compliant);
        let verdict = check(&Requirements::default(), &facts);
        assert_eq!(verdict.compliant, verdict.reasons.is_empty());
        verdict.reasons
    }

    #[test]
    fn compliance_each_requirement() {
        let defaults = Requirements::default();
        assert!(defaults.allowed_registries.is_empty() && defaults.require_digest);
        assert!(defaults.forbid_malware && defaults.forbid_sensitive_data);
        assert_eq!(defaults.max_misconfiguration, Some(Medium));
        assert!(unmet(|_| {}).is_empty());
        assert!(unmet(|f| f.worst_misconfiguration = Some(Medium)).is_empty());
        let digest = "image nginx:1.25 is not pinned by digest and its digest is unknown";
        assert_eq!(unmet(|f| f.digest = None), [digest]);
        let malware = "image nginx:1.25 has 2 malware finding(s)";
        assert_eq!(unmet(|f| f.malware = 2), [malware]);
        let sensitive = "image nginx:1.25 has 1 sensitive-data finding(s)";
        assert_eq!(unmet(|f| f.sensitive_data = 1), [sensitive]);
        let misconfigured =
            "image nginx:1.25 runs in a pod with a high misconfiguration, above the allowed medium";
        let high = unmet(|f| f.worst_misconfiguration = Some(High));
        assert_eq!(high, [misconfigured]);
    }

    #[test]
    fn allowed_registries_match_whole_path_components() {
        let allowed = ["ghcr.io/acme", "localhost:5000", "docker.io/library/"];
        let requirements = Requirements {
            allowed_registries: allowed.map(String::from).to_vec(),
            ..Requirements::default()
        };
        for (image, ok) in [
            ("ghcr.io/acme/x:1", true),
            ("GHCR.io/acme/x:1", true),
            ("ghcr.io/acme", true),
            ("ghcr.io/acmeco/x:1", false),
            ("ghcr.io/other/x", false),
            ("localhost:5000/x", true),
            ("localhost/x", false),
            ("nginx:1.25", true),
            ("docker.io/library/redis", true),
            ("bitnami/redis", false),
        ] {
            let verdict = check(&requirements, &facts(image));
            assert_eq!(verdict.compliant, ok, "{image}: {verdict:?}");
            assert!(ok || verdict.reasons[0].contains("not an allowed registry"));
        }
    }
}
