//! The Helm chart in `deploy/helm/tapwire`: `helm lint`, then `helm template`
//! with the default values, with `ci/all-stages-values.yaml` (every stage on,
//! every Secret created) and with each stage switched off, and checks on what
//! it renders: the workloads, the capture DaemonSet's capabilities and host
//! access, resources, probes and scrape annotations of every pod,
//! tapwire.toml against `deploy/tapwire.example.toml`, the policy files
//! against the policy compiler, the RBAC against
//! `deploy/k8s-watch-rbac.yaml`, and every Secret and ConfigMap a pod names.
//!
//! Helm is the `helm` CLI when it is on PATH, else Helm's Go SDK through the
//! `helm-python-sdk` package (`scripts/services.sh install` installs that one
//! where the CLI's release downloads cannot be reached). Without either the
//! tests print why they skip, and fail under `CI=true`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_norway::Value;
use tapwire_tests::require;

const RELEASE: &str = "rel";
const NAMESPACE: &str = "tapwire";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn chart() -> PathBuf {
    repo().join("deploy/helm/tapwire")
}

fn all_stages_values() -> PathBuf {
    chart().join("ci/all-stages-values.yaml")
}

/// Lints and renders with the SDK the way `helm lint --strict` and
/// `helm template` do with `-f` files (merged in order, maps deeply).
const SDK_SCRIPT: &str = r##"
import json, sys
import helm_python as h

def merge(base, over):
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = v
    return base

mode, chart, release, namespace = sys.argv[1:5]
values = {}
for path in sys.argv[5:]:
    with open(path) as f:
        merge(values, h.values_from_yaml(f.read()) or {})
if mode == "lint":
    report = h.lint(chart, values, strict=True, namespace=namespace)
    for m in report.get("messages", []):
        level = {1: "INFO", 2: "WARNING", 3: "ERROR"}.get(m.get("severity"), "UNKNOWN")
        print(f"[{level}] {m.get('path')}: {m.get('error')}")
    bad = report.get("errors") or [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    sys.exit(1 if bad else 0)
out = h.Chart.load(chart).render(values, name=release, namespace=namespace, is_install=True)
for path in sorted(out):
    if path.endswith("NOTES.txt") or not out[path].strip():
        continue
    print("---")
    print("# Source: " + path)
    print(out[path])
"##;

/// Where Helm comes from.
enum Helm {
    /// The `helm` binary.
    Cli(PathBuf),
    /// Helm's Go SDK in the Python package `helm_python`, run by this python.
    Sdk(String),
}

fn find_helm() -> Option<Helm> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(bin) = std::env::split_paths(&path)
        .map(|dir| dir.join("helm"))
        .find(|p| p.is_file())
    {
        return Some(Helm::Cli(bin));
    }
    let python = std::env::var("TAPWIRE_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let sdk = Command::new(&python)
        .args(["-c", "import helm_python"])
        .current_dir(std::env::temp_dir())
        .output()
        .is_ok_and(|o| o.status.success());
    sdk.then_some(Helm::Sdk(python))
}

fn helm() -> Option<Helm> {
    require(
        "helm (the CLI, or Helm's SDK from the helm-python-sdk package)",
        find_helm(),
        "install it with `scripts/services.sh install`",
    )
}

impl Helm {
    fn command(&self, mode: &str, values: &[PathBuf]) -> Command {
        match self {
            Helm::Cli(bin) => {
                let mut cmd = Command::new(bin);
                if mode == "lint" {
                    cmd.args(["lint", "--strict", "--namespace", NAMESPACE]);
                    cmd.arg(chart());
                } else {
                    cmd.args(["template", RELEASE]).arg(chart());
                    cmd.args(["--namespace", NAMESPACE]);
                }
                for v in values {
                    cmd.arg("--values").arg(v);
                }
                cmd
            }
            Helm::Sdk(python) => {
                let mut cmd = Command::new(python);
                cmd.args(["-c", SDK_SCRIPT, mode])
                    .arg(chart())
                    .args([RELEASE, NAMESPACE])
                    .args(values)
                    .current_dir(std::env::temp_dir());
                cmd
            }
        }
    }

    fn run(&self, mode: &str, values: &[PathBuf]) -> Result<String, String> {
        let out = self
            .command(mode, values)
            .output()
            .expect("run helm (or python3)");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!("{stdout}\n{stderr}"))
        }
    }

    /// The rendered manifests, parsed, for these values files plus the
    /// YAML texts in `overrides` (applied last, in order).
    fn template(&self, values: &[PathBuf], overrides: &[&str]) -> Manifests {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut files = values.to_vec();
        for (i, text) in overrides.iter().enumerate() {
            let file = dir.path().join(format!("override-{i}.yaml"));
            std::fs::write(&file, text).expect("write values");
            files.push(file);
        }
        let text = self
            .run("template", &files)
            .unwrap_or_else(|e| panic!("helm template with {files:?} failed:\n{e}"));
        Manifests::parse(&text)
    }
}

/// Every rendered document that is not empty.
struct Manifests(Vec<Value>);

impl Manifests {
    fn parse(text: &str) -> Manifests {
        let mut docs = Vec::new();
        for doc in serde_norway::Deserializer::from_str(text) {
            let value = Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{text}"));
            if !value.is_null() {
                assert!(
                    value["kind"].is_string() && value["apiVersion"].is_string(),
                    "a document without kind/apiVersion: {value:?}"
                );
                docs.push(value);
            }
        }
        Manifests(docs)
    }

    fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.0.iter().filter(move |d| d["kind"] == kind)
    }

    fn get(&self, kind: &str, name: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
    }

    fn expect(&self, kind: &str, name: &str) -> &Value {
        self.get(kind, name)
            .unwrap_or_else(|| panic!("no {kind} {name} in {:?}", self.names()))
    }

    fn names(&self) -> BTreeSet<String> {
        self.0
            .iter()
            .map(|d| format!("{}/{}", s(&d["kind"]), s(&d["metadata"]["name"])))
            .collect()
    }

    /// (kind/name, pod template) of every workload.
    fn pods(&self) -> Vec<(String, &Value)> {
        self.0
            .iter()
            .filter(|d| matches!(s(&d["kind"]), "Deployment" | "DaemonSet" | "StatefulSet"))
            .map(|d| {
                (
                    format!("{}/{}", s(&d["kind"]), s(&d["metadata"]["name"])),
                    &d["spec"]["template"],
                )
            })
            .collect()
    }

    fn config_map(&self) -> &Value {
        self.expect("ConfigMap", &name("config"))
    }

    fn tapwire_toml(&self) -> toml::Table {
        let text = s(&self.config_map()["data"]["tapwire.toml"]);
        text.parse()
            .unwrap_or_else(|e| panic!("tapwire.toml does not parse as TOML: {e}\n{text}"))
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

fn name(stage: &str) -> String {
    format!("{RELEASE}-tapwire-{stage}")
}

const STAGES: [&str; 7] = [
    "k8s-watch",
    "enrich",
    "policy",
    "aggregate",
    "serve",
    "cef",
    "record",
];

fn default_render(helm: &Helm) -> Manifests {
    helm.template(&[], &[])
}

fn all_stages_render(helm: &Helm) -> Manifests {
    helm.template(&[all_stages_values()], &[])
}

#[test]
fn the_chart_lints_with_the_defaults_and_with_every_stage_on() {
    let Some(helm) = helm() else { return };
    for values in [vec![], vec![all_stages_values()]] {
        if let Err(report) = helm.run("lint", &values) {
            panic!("helm lint --strict with {values:?} failed:\n{report}");
        }
    }
}

#[test]
fn the_defaults_run_the_pipeline_up_to_serve_and_every_stage_can_be_on() {
    let Some(helm) = helm() else { return };
    let defaults = default_render(&helm);
    defaults.expect("DaemonSet", &name("capture"));
    for stage in ["k8s-watch", "enrich", "policy", "aggregate", "serve"] {
        defaults.expect("Deployment", &name(stage));
    }
    for stage in ["cef", "record"] {
        assert!(
            defaults.get("Deployment", &name(stage)).is_none(),
            "{stage} is off by default (it needs a SIEM / a bucket)"
        );
    }
    defaults.expect("Service", &name("serve"));
    defaults.expect("ServiceAccount", &name("k8s-watch"));
    defaults.expect("ClusterRole", &name("k8s-watch"));
    defaults.expect("ClusterRoleBinding", &name("k8s-watch"));
    defaults.config_map();
    assert_eq!(
        defaults.of_kind("Secret").count(),
        0,
        "no Secret by default"
    );
    for doc in &defaults.0 {
        if !matches!(s(&doc["kind"]), "ClusterRole" | "ClusterRoleBinding") {
            assert_eq!(doc["metadata"]["namespace"], NAMESPACE, "{doc:?}");
        }
    }

    let all = all_stages_render(&helm);
    all.expect("DaemonSet", &name("capture"));
    for stage in STAGES {
        all.expect("Deployment", &name(stage));
    }
    for secret in ["s3", "syslog-tls", "clickhouse"] {
        all.expect("Secret", &name(secret));
    }
    let kinds: BTreeSet<&str> = all.0.iter().map(|d| s(&d["kind"])).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "DaemonSet",
            "Deployment",
            "Secret",
            "Service",
            "ServiceAccount"
        ])
    );
}

#[test]
fn capture_has_exactly_the_capabilities_and_host_access_it_needs() {
    let Some(helm) = helm() else { return };
    for manifests in [default_render(&helm), all_stages_render(&helm)] {
        let ds = manifests.expect("DaemonSet", &name("capture"));
        let pod = &ds["spec"]["template"]["spec"];
        assert_eq!(
            pod["hostNetwork"], true,
            "live capture and inventory see the node"
        );
        assert_eq!(pod["hostPID"], true, "host PIDs of eBPF events resolve");
        assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
        assert_ne!(pod["automountServiceAccountToken"], true);
        let containers = seq(&pod["containers"]);
        assert_eq!(containers.len(), 1);
        let c = &containers[0];
        let sc = &c["securityContext"];
        let added: BTreeSet<&str> = seq(&sc["capabilities"]["add"]).iter().map(s).collect();
        assert_eq!(
            added,
            BTreeSet::from(["BPF", "PERFMON", "NET_RAW", "NET_ADMIN", "SYS_PTRACE"])
        );
        let dropped: Vec<&str> = seq(&sc["capabilities"]["drop"]).iter().map(s).collect();
        assert_eq!(dropped, ["ALL"]);
        assert_ne!(sc["privileged"], true, "never privileged");
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["readOnlyRootFilesystem"], true);

        // mount path -> host path, all read-only
        let volumes: BTreeMap<&str, &Value> = seq(&pod["volumes"])
            .iter()
            .map(|v| (s(&v["name"]), v))
            .collect();
        let mut host_mounts = BTreeMap::new();
        for m in seq(&c["volumeMounts"]) {
            let volume = volumes
                .get(s(&m["name"]))
                .unwrap_or_else(|| panic!("mount {m:?} names no volume"));
            if let Some(host) = volume["hostPath"]["path"].as_str() {
                assert_eq!(m["readOnly"], true, "host path {host} is mounted read-only");
                host_mounts.insert(s(&m["mountPath"]), host);
            }
        }
        assert_eq!(
            host_mounts,
            BTreeMap::from([
                ("/host/proc", "/proc"),
                ("/sys/fs/cgroup", "/sys/fs/cgroup"),
                ("/sys/kernel/btf", "/sys/kernel/btf"),
                ("/sys/kernel/tracing", "/sys/kernel/tracing"),
            ])
        );
        let env = env_of(c);
        assert_eq!(
            env.get("TAPWIRE_CAPTURE__INVENTORY__PROC_ROOT"),
            Some(&"/host/proc".to_owned()),
            "the inventory reads the host's /proc where it is mounted"
        );
        let node_name = seq(&c["env"])
            .iter()
            .find(|e| e["name"] == "NODE_NAME")
            .expect("NODE_NAME");
        assert_eq!(
            node_name["valueFrom"]["fieldRef"]["fieldPath"],
            "spec.nodeName"
        );
        assert!(
            seq(&ds["spec"]["template"]["spec"]["tolerations"])
                .iter()
                .any(|t| t["operator"] == "Exists"),
            "the agent runs on tainted nodes too"
        );

        // No other pod gets any of it.
        for (what, template) in manifests.pods() {
            if what.starts_with("DaemonSet/") {
                continue;
            }
            let spec = &template["spec"];
            assert_ne!(spec["hostNetwork"], true, "{what}");
            assert_ne!(spec["hostPID"], true, "{what}");
            assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{what}");
            assert!(
                seq(&spec["volumes"])
                    .iter()
                    .all(|v| v["hostPath"].is_null()),
                "{what} mounts no host path"
            );
            for c in seq(&spec["containers"]) {
                let caps = &c["securityContext"]["capabilities"];
                assert!(seq(&caps["add"]).is_empty(), "{what} adds no capability");
                assert_eq!(seq(&caps["drop"]).first().map(s), Some("ALL"), "{what}");
                assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
            }
        }
    }
}

/// name -> value of the literal environment variables of a container.
fn env_of(container: &Value) -> BTreeMap<String, String> {
    seq(&container["env"])
        .iter()
        .filter_map(|e| Some((s(&e["name"]).to_owned(), e["value"].as_str()?.to_owned())))
        .collect()
}

#[test]
fn every_pod_has_resources_probes_and_scrape_annotations() {
    let Some(helm) = helm() else { return };
    for manifests in [default_render(&helm), all_stages_render(&helm)] {
        let pods = manifests.pods();
        assert!(pods.len() >= 6);
        for (what, template) in pods {
            let annotations = &template["metadata"]["annotations"];
            assert_eq!(annotations["prometheus.io/scrape"], "true", "{what}");
            assert_eq!(annotations["prometheus.io/path"], "/metrics", "{what}");
            let port = s(&annotations["prometheus.io/port"]);
            let containers = seq(&template["spec"]["containers"]);
            assert!(!containers.is_empty(), "{what}");
            for c in containers {
                let who = format!("{what} container {}", s(&c["name"]));
                for bound in ["requests", "limits"] {
                    for resource in ["cpu", "memory"] {
                        assert!(
                            !c["resources"][bound][resource].is_null(),
                            "{who} has no {bound}.{resource}"
                        );
                    }
                }
                let admin = seq(&c["ports"])
                    .iter()
                    .find(|p| p["name"] == "admin")
                    .unwrap_or_else(|| panic!("{who} has no admin port"));
                let admin_port = admin["containerPort"].as_u64().expect("containerPort");
                assert_eq!(port, admin_port.to_string(), "{who}: scrape port");
                for probe in ["readinessProbe", "livenessProbe"] {
                    let get = &c[probe]["httpGet"];
                    assert_eq!(get["path"], "/healthz", "{who} {probe}");
                    assert!(
                        get["port"] == "admin" || get["port"].as_u64() == Some(admin_port),
                        "{who} {probe} probes the admin port"
                    );
                }
                assert!(
                    c["image"].as_str().is_some_and(|i| i.contains(':')),
                    "{who}: image with a tag"
                );
                assert!(!c["imagePullPolicy"].is_null(), "{who}");
            }
        }
    }
}

/// The key paths the example documents, set or commented out (`# key = v`),
/// with their values, from deploy/tapwire.example.toml.
fn documented_keys() -> BTreeMap<String, toml::Value> {
    let text = std::fs::read_to_string(repo().join("deploy/tapwire.example.toml"))
        .expect("deploy/tapwire.example.toml");
    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest.split_once(" = ").is_some_and(|(k, _)| {
                    k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                }) =>
            {
                rest.to_owned()
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let table: toml::Table = uncommented
        .parse()
        .unwrap_or_else(|e| panic!("the example, uncommented, does not parse: {e}"));
    let mut keys = BTreeMap::new();
    flatten("", &table, &mut keys);
    keys
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, toml::Value>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            // kafka.options is librdkafka's pass-through map: any key
            toml::Value::Table(t) if path != "kafka.options" => flatten(&path, t, out),
            _ => {
                out.insert(path, v.clone());
            }
        }
    }
}

#[test]
fn tapwire_toml_uses_only_documented_keys_with_their_types() {
    let Some(helm) = helm() else { return };
    let documented = documented_keys();
    assert!(
        documented.contains_key("cef.ca_file"),
        "commented keys count"
    );
    for manifests in [default_render(&helm), all_stages_render(&helm)] {
        let mut keys = BTreeMap::new();
        flatten("", &manifests.tapwire_toml(), &mut keys);
        for (key, value) in &keys {
            let doc = documented.get(key).unwrap_or_else(|| {
                panic!(
                    "tapwire.toml sets {key}, which deploy/tapwire.example.toml does not document"
                )
            });
            assert_eq!(
                value.type_str(),
                doc.type_str(),
                "{key} = {value} is a {} where the example has a {}",
                value.type_str(),
                doc.type_str()
            );
        }
        let admin = keys["telemetry.admin_listen"]
            .as_str()
            .expect("admin_listen");
        assert_eq!(admin, "0.0.0.0:9464");
        assert_eq!(keys["aggregate.listen"].as_str(), Some("0.0.0.0:8080"));

        // Overrides through the environment name documented keys too (capture
        // and record are not in the example yet: their crates' config structs
        // must have the field).
        for (what, template) in manifests.pods() {
            for c in seq(&template["spec"]["containers"]) {
                for e in seq(&c["env"]) {
                    let Some(rest) = s(&e["name"]).strip_prefix("TAPWIRE_") else {
                        continue;
                    };
                    if rest == "CONFIG" {
                        assert_eq!(e["value"], "/etc/tapwire/tapwire.toml");
                        continue;
                    }
                    let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
                    check_env_key(&documented, &what, &path);
                }
            }
        }
    }
    let all = all_stages_render(&helm);
    let toml = all.tapwire_toml();
    let cef = toml["cef"].as_table().expect("[cef]");
    assert_eq!(cef["ca_file"].as_str(), Some("/etc/tapwire/tls/ca.pem"));
    assert_eq!(
        cef["client_cert_file"].as_str(),
        Some("/etc/tapwire/tls/client.pem")
    );
    assert_eq!(
        cef["client_key_file"].as_str(),
        Some("/etc/tapwire/tls/client.key")
    );
    assert_eq!(
        toml["kafka"]["options"]["security.protocol"].as_str(),
        Some("ssl")
    );
}

fn check_env_key(documented: &BTreeMap<String, toml::Value>, what: &str, path: &[String]) {
    let source = match path[0].as_str() {
        "capture" => "capture/src/config.rs",
        "record" => "pcap-recorder/src/config.rs",
        _ => {
            let key = path.join(".");
            assert!(
                documented.contains_key(&key),
                "{what} overrides {key}, which the example does not document"
            );
            return;
        }
    };
    let text = std::fs::read_to_string(repo().join(source)).expect(source);
    // record.queries.NAME: the name is the user's
    let fields = if path[1] == "queries" {
        &path[1..2]
    } else {
        &path[1..]
    };
    for field in fields {
        assert!(
            text.contains(&format!("pub {field}:")),
            "{what} sets {}, but {source} has no field {field}",
            path.join(".")
        );
    }
}

#[test]
fn the_policy_files_compile_and_the_policy_stage_reads_each() {
    let Some(helm) = helm() else { return };
    for manifests in [default_render(&helm), all_stages_render(&helm)] {
        let data = manifests.config_map()["data"]
            .as_mapping()
            .expect("ConfigMap data");
        let mut files = BTreeSet::new();
        for (key, text) in data {
            let Some(file) = s(key).strip_prefix("policy-") else {
                continue;
            };
            let documents = tapwire_policy_engine::parse(file, s(text))
                .unwrap_or_else(|e| panic!("policy file {file}: {e}"));
            tapwire_policy_engine::PolicySet::compile(&documents)
                .unwrap_or_else(|e| panic!("policy file {file}: {e}"));
            files.insert(file.to_owned());
        }
        assert!(!files.is_empty(), "at least one policy file");

        let deployment = manifests.expect("Deployment", &name("policy"));
        let spec = &deployment["spec"]["template"]["spec"];
        let args: Vec<&str> = seq(&spec["containers"][0]["args"]).iter().map(s).collect();
        assert_eq!(args.first(), Some(&"policy"));
        let named: BTreeSet<String> = args
            .windows(2)
            .filter(|w| w[0] == "--policies")
            .map(|w| {
                w[1].strip_prefix("/etc/tapwire/policies/")
                    .expect("under /etc/tapwire/policies")
                    .to_owned()
            })
            .collect();
        assert_eq!(named, files, "--policies names every policy file");
        let config_volume = seq(&spec["volumes"])
            .iter()
            .find(|v| v["name"] == "config")
            .expect("config volume");
        let items: BTreeMap<&str, &str> = seq(&config_volume["configMap"]["items"])
            .iter()
            .map(|i| (s(&i["path"]), s(&i["key"])))
            .collect();
        for file in &files {
            assert_eq!(
                items.get(format!("policies/{file}").as_str()),
                Some(&format!("policy-{file}").as_str())
            );
        }
        let mount = seq(&spec["containers"][0]["volumeMounts"])
            .iter()
            .find(|m| m["name"] == "config")
            .expect("config mount");
        assert_eq!(mount["mountPath"], "/etc/tapwire");
        assert!(
            mount["subPath"].is_null(),
            "no subPath: ConfigMap updates reach the running pod"
        );
    }
}

#[test]
fn k8s_watch_gets_the_rbac_of_deploy_k8s_watch_rbac_yaml_and_no_one_else_a_token() {
    let Some(helm) = helm() else { return };
    let text = std::fs::read_to_string(repo().join("deploy/k8s-watch-rbac.yaml"))
        .expect("deploy/k8s-watch-rbac.yaml");
    let reference = Manifests::parse(&text);
    let reference_rules = &reference.of_kind("ClusterRole").next().expect("role")["rules"];

    let manifests = all_stages_render(&helm);
    let sa = name("k8s-watch");
    let role = manifests.expect("ClusterRole", &sa);
    assert_eq!(&role["rules"], reference_rules);
    let binding = manifests.expect("ClusterRoleBinding", &sa);
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], sa.as_str());
    let subjects = seq(&binding["subjects"]);
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0]["kind"], "ServiceAccount");
    assert_eq!(subjects[0]["name"], sa.as_str());
    assert_eq!(subjects[0]["namespace"], NAMESPACE);
    manifests.expect("ServiceAccount", &sa);

    for (what, template) in manifests.pods() {
        let spec = &template["spec"];
        if what == format!("Deployment/{sa}") {
            assert_eq!(spec["serviceAccountName"], sa.as_str());
            let args: Vec<&str> = seq(&spec["containers"][0]["args"]).iter().map(s).collect();
            assert_eq!(args, ["k8s-watch", "--namespace", "shop"]);
        } else {
            assert_eq!(spec["automountServiceAccountToken"], false, "{what}");
            assert!(spec["serviceAccountName"].is_null(), "{what}");
        }
    }
}

#[test]
fn every_secret_and_config_map_a_pod_names_is_rendered_with_its_keys() {
    let Some(helm) = helm() else { return };
    for manifests in [default_render(&helm), all_stages_render(&helm)] {
        let keys_of = |kind: &str, name: &str| -> BTreeSet<String> {
            let doc = manifests
                .get(kind, name)
                .unwrap_or_else(|| panic!("a pod names {kind} {name}, which is not rendered"));
            ["data", "stringData"]
                .iter()
                .filter_map(|field| doc[*field].as_mapping())
                .flat_map(|m| m.keys().map(|k| s(k).to_owned()))
                .collect()
        };
        let mut named = 0;
        for (what, template) in manifests.pods() {
            let spec = &template["spec"];
            for v in seq(&spec["volumes"]) {
                if let Some(secret) = v["secret"]["secretName"].as_str() {
                    let keys = keys_of("Secret", secret);
                    for item in seq(&v["secret"]["items"]) {
                        assert!(keys.contains(s(&item["key"])), "{what}: {item:?}");
                    }
                    named += 1;
                }
                if let Some(cm) = v["configMap"]["name"].as_str() {
                    let keys = keys_of("ConfigMap", cm);
                    for item in seq(&v["configMap"]["items"]) {
                        assert!(keys.contains(s(&item["key"])), "{what}: {item:?}");
                    }
                }
            }
            for c in seq(&spec["containers"]) {
                for e in seq(&c["env"]) {
                    let reference = &e["valueFrom"]["secretKeyRef"];
                    if let Some(secret) = reference["name"].as_str() {
                        let keys = keys_of("Secret", secret);
                        assert!(
                            keys.contains(s(&reference["key"])),
                            "{what}: Secret {secret} has no key {:?}",
                            reference["key"]
                        );
                        named += 1;
                    }
                }
                for from in seq(&c["envFrom"]) {
                    if let Some(secret) = from["secretRef"]["name"].as_str() {
                        keys_of("Secret", secret);
                        named += 1;
                    }
                }
            }
        }
        // The TLS mount, two S3 keys, the ClickHouse password of aggregate
        // and serve.
        let expected = if manifests.of_kind("Secret").count() == 0 {
            0
        } else {
            5
        };
        assert_eq!(named, expected, "references to Secrets");
    }
    let all = all_stages_render(&helm);
    let tls = all.expect("Secret", &name("syslog-tls"));
    for key in ["ca.pem", "client.pem", "client.key"] {
        assert!(tls["stringData"][key].is_string(), "syslog TLS {key}");
    }
    let cef = all.expect("Deployment", &name("cef"));
    let mount = seq(&cef["spec"]["template"]["spec"]["containers"][0]["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"] == "/etc/tapwire/tls")
        .expect("TLS material mounted where tapwire.toml names it");
    assert_eq!(mount["readOnly"], true);
}

#[test]
fn switching_a_stage_off_removes_its_workload_and_nothing_else() {
    let Some(helm) = helm() else { return };
    let all = all_stages_render(&helm);
    let everything = all.names();
    let toggles: [(&str, &[&str]); 8] = [
        ("capture", &["DaemonSet/capture"]),
        (
            "k8sWatch",
            &[
                "Deployment/k8s-watch",
                "ServiceAccount/k8s-watch",
                "ClusterRole/k8s-watch",
                "ClusterRoleBinding/k8s-watch",
            ],
        ),
        ("enrich", &["Deployment/enrich"]),
        ("policy", &["Deployment/policy"]),
        ("aggregate", &["Deployment/aggregate"]),
        ("serve", &["Deployment/serve", "Service/serve"]),
        ("cef", &["Deployment/cef", "Secret/syslog-tls"]),
        ("record", &["Deployment/record", "Secret/s3"]),
    ];
    for (stage, gone) in toggles {
        let off = helm.template(
            &[all_stages_values()],
            &[&format!("{stage}:\n  enabled: false\n")],
        );
        let gone: BTreeSet<String> = gone
            .iter()
            .map(|g| {
                let (kind, suffix) = g.split_once('/').expect("kind/name");
                format!("{kind}/{}", name(suffix))
            })
            .collect();
        let expected: BTreeSet<String> = everything.difference(&gone).cloned().collect();
        assert_eq!(off.names(), expected, "{stage}.enabled: false");
    }
}

#[test]
fn misconfigurations_are_refused_with_the_value_to_set() {
    let Some(helm) = helm() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("record:\n  enabled: true\n  kfl: dns\n", "record.s3.bucket"),
        (
            "record:\n  enabled: true\n  s3: {bucket: b}\n",
            "record.kfl or record.queries",
        ),
        (
            "cef:\n  enabled: true\n  tls: {enabled: true}\n",
            "cef.tls.existingSecret",
        ),
        ("policies: null\n", "at least one file in `policies`"),
        (
            "config:\n  capture:\n    node_name: x\n",
            "capture.* values",
        ),
    ];
    for (i, (values, message)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad-{i}.yaml"));
        std::fs::write(&file, values).expect("write");
        match helm.run("template", &[file]) {
            Ok(out) => panic!("rendered with {values:?}:\n{out}"),
            Err(err) => assert!(err.contains(message), "{values:?}: {err}"),
        }
    }
}

/// `serve.tokens.existingSecret`: the Secret is mounted read-only and named
/// by aggregate.tokens_file, so the console's sign-in comes from it.
#[test]
fn serve_signs_in_with_tokens_from_a_secret() {
    let Some(helm) = helm() else { return };
    let m = helm.template(
        &[],
        &["serve:\n  tokens:\n    existingSecret: api-tokens\n"],
    );
    let serve = m.expect("Deployment", &name("serve"));
    let spec = &serve["spec"]["template"]["spec"];
    let volume = seq(&spec["volumes"])
        .iter()
        .find(|v| v["name"] == "api-tokens")
        .unwrap_or_else(|| panic!("no api-tokens volume: {spec:?}"));
    assert_eq!(volume["secret"]["secretName"], "api-tokens");
    let container = &seq(&spec["containers"])[0];
    assert!(
        seq(&container["volumeMounts"])
            .iter()
            .any(|v| v["name"] == "api-tokens"
                && v["mountPath"] == "/etc/tapwire/tokens"
                && v["readOnly"] == true),
        "{container:?}"
    );
    assert_eq!(
        env_of(container)
            .get("TAPWIRE_AGGREGATE__TOKENS_FILE")
            .map(String::as_str),
        Some("/etc/tapwire/tokens/tokens")
    );
    // Without it, no such volume.
    let plain = helm.template(&[], &[]);
    let spec = &plain.expect("Deployment", &name("serve"))["spec"]["template"]["spec"];
    assert!(
        seq(&spec["volumes"])
            .iter()
            .all(|v| v["name"] != "api-tokens")
    );
}
