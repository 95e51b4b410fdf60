//! `tapwire k8s-watch`: pods, nodes and Services from the Kubernetes API
//! (kube-rs watchers) to the compacted `tapwire.pods` topic, keyed by uid
//! ([`ClusterRecord::to_out_record`]); and [`records_from_listing`], the same
//! records from a saved `kubectl get -o json` listing.
//!
//! Every change of a pod publishes its whole record; a deleted pod is
//! published once more with its end time, and compaction keeps that last
//! record, so the history of who owned an IP survives the pod. Pods that
//! finished (phase Succeeded or Failed) have given their IP back: their end
//! time is the last container's finish time.
//!
//! Nodes tell the [`OwnerIndex`](crate::OwnerIndex) which addresses are
//! hosts (and which node); Services tell it which cluster IPs are Services.

use std::collections::BTreeMap;
use std::net::IpAddr;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::runtime::watcher;
use tapwire_plumbing::bus::{OutRecord, Sink};
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_schemas::events::{
    Container, ContainerSecurity, EventHeader, NodeMetadata, PodMetadata, PodSecurity,
    ServiceMetadata, Workload,
};
use tapwire_schemas::{EventId, Ip};

use crate::ClusterRecord;

fn ns(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> i64 {
    t.0.as_nanosecond() as i64
}

/// The runtime's container id without its `containerd://` (or other) prefix.
fn container_id(raw: &str) -> &str {
    raw.split_once("://").map_or(raw, |(_, id)| id)
}

/// The digest in an image id such as `registry/app@sha256:...`.
fn digest(image_id: &str) -> Option<String> {
    image_id
        .rsplit_once('@')
        .map(|(_, d)| d)
        .or_else(|| image_id.strip_prefix("docker-pullable://"))
        .filter(|d| d.starts_with("sha256:"))
        .map(str::to_owned)
}

/// The controller that owns the pod, followed one step: a ReplicaSet named
/// `<deployment>-<hash>` is reported as that Deployment.
fn workload(pod: &Pod) -> Option<Workload> {
    let owner = pod
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))?;
    let (kind, name) = match owner.kind.as_str() {
        "ReplicaSet" => match owner.name.rsplit_once('-') {
            Some((deployment, hash))
                if !hash.is_empty() && hash.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                ("Deployment", deployment.to_owned())
            }
            _ => ("ReplicaSet", owner.name.clone()),
        },
        kind => (kind, owner.name.clone()),
    };
    Some(Workload {
        kind: kind.to_owned(),
        name,
    })
}

/// Records from a saved listing, as `kubectl get pods,nodes,services -A -o
/// json` prints it (a `List` of Pod, Node and Service objects; other kinds
/// are skipped), seen at `observed_ns`. For `tapwire run` without a cluster.
pub fn records_from_listing(
    listing: &str,
    observed_ns: i64,
) -> Result<Vec<ClusterRecord>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct List {
        items: Vec<serde_json::Value>,
    }
    let list: List = serde_json::from_str(listing)?;
    let mut records = Vec::new();
    for item in list.items {
        let kind = item
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        match kind {
            "Pod" => {
                let pod: Pod = serde_json::from_value(item)?;
                records.extend(
                    pod_metadata(&pod, "listing", observed_ns, None).map(ClusterRecord::Pod),
                );
            }
            "Node" => {
                let node: Node = serde_json::from_value(item)?;
                records.extend(
                    node_metadata(&node, "listing", observed_ns, None).map(ClusterRecord::Node),
                );
            }
            "Service" => {
                let svc: Service = serde_json::from_value(item)?;
                records.extend(
                    service_metadata(&svc, "listing", observed_ns, None)
                        .map(ClusterRecord::Service),
                );
            }
            _ => {}
        }
    }
    Ok(records)
}

/// A pod's metadata record. `observed_ns` is when the watcher saw this
/// state; `deleted_ns` is set when the pod is gone. `None` for a pod without
/// a uid (never the case for pods the API serves).
pub fn pod_metadata(
    pod: &Pod,
    watcher_id: &str,
    observed_ns: i64,
    deleted_ns: Option<i64>,
) -> Option<PodMetadata> {
    let meta = &pod.metadata;
    let uid = meta.uid.clone()?;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let node = spec.and_then(|s| s.node_name.clone()).unwrap_or_default();
    let mut ips: Vec<Ip> = status
        .and_then(|s| s.pod_ips.as_ref())
        .map(|list| {
            list.iter()
                .filter_map(|p| p.ip.parse::<IpAddr>().ok())
                .map(Ip)
                .collect()
        })
        .unwrap_or_default();
    if ips.is_empty()
        && let Some(ip) = status
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok())
    {
        ips.push(Ip(ip));
    }
    let statuses = status.and_then(|s| s.container_statuses.as_ref());
    let containers = statuses
        .map(|list| {
            list.iter()
                .filter_map(|c| {
                    Some(Container {
                        id: container_id(c.container_id.as_deref()?).to_owned(),
                        name: c.name.clone(),
                        image: c.image.clone(),
                        image_digest: digest(&c.image_id),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let finished = matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    let finished_at = statuses
        .into_iter()
        .flatten()
        .filter_map(|c| {
            c.state
                .as_ref()?
                .terminated
                .as_ref()?
                .finished_at
                .as_ref()
                .map(ns)
        })
        .max();
    let end_ns = deleted_ns.or(if finished {
        finished_at.or(Some(observed_ns))
    } else {
        None
    });
    let resource_version = meta.resource_version.clone().unwrap_or_default();
    Some(PodMetadata {
        header: EventHeader {
            id: EventId::derive(&[
                uid.as_bytes(),
                resource_version.as_bytes(),
                &[u8::from(deleted_ns.is_some())],
            ]),
            timestamp_ns: observed_ns,
            node,
            sensor_id: watcher_id.to_owned(),
            node_ip: status
                .and_then(|s| s.host_ip.as_deref())
                .and_then(|ip| ip.parse().ok())
                .map(Ip),
        },
        uid,
        name: meta.name.clone().unwrap_or_default(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        ips,
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        containers,
        labels: meta
            .labels
            .clone()
            .map(|l| l.into_iter().collect::<BTreeMap<_, _>>())
            .unwrap_or_default(),
        workload: workload(pod),
        start_ns: status.and_then(|s| s.start_time.as_ref()).map(ns),
        end_ns,
        security: spec.map(pod_security),
    })
}

/// The spec's isolation and privilege settings, init containers first.
fn pod_security(spec: &k8s_openapi::api::core::v1::PodSpec) -> PodSecurity {
    let pod_context = spec.security_context.as_ref();
    let limit = |c: &k8s_openapi::api::core::v1::Container, name: &str| {
        c.resources
            .as_ref()?
            .limits
            .as_ref()?
            .get(name)
            .map(|q| q.0.clone())
    };
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c| {
            let context = c.security_context.as_ref();
            ContainerSecurity {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                privileged: context.and_then(|s| s.privileged).unwrap_or(false),
                allow_privilege_escalation: context.and_then(|s| s.allow_privilege_escalation),
                added_capabilities: context
                    .and_then(|s| s.capabilities.as_ref())
                    .and_then(|caps| caps.add.clone())
                    .unwrap_or_default(),
                run_as_non_root: context.and_then(|s| s.run_as_non_root),
                run_as_user: context.and_then(|s| s.run_as_user),
                read_only_root_filesystem: context
                    .and_then(|s| s.read_only_root_filesystem)
                    .unwrap_or(false),
                cpu_limit: limit(c, "cpu"),
                memory_limit: limit(c, "memory"),
            }
        })
        .collect();
    PodSecurity {
        host_pid: spec.host_pid.unwrap_or(false),
        host_ipc: spec.host_ipc.unwrap_or(false),
        host_path_volumes: spec
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| v.host_path.as_ref().map(|h| h.path.clone()))
            .collect(),
        run_as_non_root: pod_context.and_then(|s| s.run_as_non_root),
        run_as_user: pod_context.and_then(|s| s.run_as_user),
        containers,
    }
}

fn header(
    uid: &str,
    meta: &kube::api::ObjectMeta,
    node: String,
    watcher_id: &str,
    observed_ns: i64,
    deleted: bool,
) -> EventHeader {
    let resource_version = meta.resource_version.clone().unwrap_or_default();
    EventHeader {
        id: EventId::derive(&[
            uid.as_bytes(),
            resource_version.as_bytes(),
            &[u8::from(deleted)],
        ]),
        timestamp_ns: observed_ns,
        node,
        sensor_id: watcher_id.to_owned(),
        node_ip: None,
    }
}

/// A node's record: its internal and external addresses.
pub fn node_metadata(
    node: &Node,
    watcher_id: &str,
    observed_ns: i64,
    deleted_ns: Option<i64>,
) -> Option<NodeMetadata> {
    let uid = node.metadata.uid.clone()?;
    let name = node.metadata.name.clone().unwrap_or_default();
    let addresses: Vec<Ip> = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(|list| {
            list.iter()
                .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
                .filter_map(|a| a.address.parse::<IpAddr>().ok())
                .map(Ip)
                .collect()
        })
        .unwrap_or_default();
    let mut header = header(
        &uid,
        &node.metadata,
        name.clone(),
        watcher_id,
        observed_ns,
        deleted_ns.is_some(),
    );
    header.node_ip = addresses.first().copied();
    Some(NodeMetadata {
        header,
        uid,
        name,
        addresses,
        labels: node
            .metadata
            .labels
            .clone()
            .map(|l| l.into_iter().collect())
            .unwrap_or_default(),
        end_ns: deleted_ns,
    })
}

/// A Service's record: its cluster IPs (none for headless Services).
pub fn service_metadata(
    service: &Service,
    watcher_id: &str,
    observed_ns: i64,
    deleted_ns: Option<i64>,
) -> Option<ServiceMetadata> {
    let meta = &service.metadata;
    let uid = meta.uid.clone()?;
    let spec = service.spec.as_ref();
    let mut ips: Vec<String> = spec.and_then(|s| s.cluster_ips.clone()).unwrap_or_default();
    if ips.is_empty()
        && let Some(ip) = spec.and_then(|s| s.cluster_ip.clone())
    {
        ips.push(ip);
    }
    Some(ServiceMetadata {
        header: header(
            &uid,
            meta,
            String::new(),
            watcher_id,
            observed_ns,
            deleted_ns.is_some(),
        ),
        uid,
        name: meta.name.clone().unwrap_or_default(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        cluster_ips: ips
            .iter()
            .filter_map(|ip| ip.parse::<IpAddr>().ok())
            .map(Ip)
            .collect(),
        ports: spec
            .and_then(|s| s.ports.as_ref())
            .map(|ports| {
                ports
                    .iter()
                    .filter_map(|p| u16::try_from(p.port).ok())
                    .collect()
            })
            .unwrap_or_default(),
        selector: spec
            .and_then(|s| s.selector.clone())
            .map(|l| l.into_iter().collect())
            .unwrap_or_default(),
        start_ns: meta.creation_timestamp.as_ref().map(ns),
        end_ns: deleted_ns,
    })
}

/// A change seen by one of the watchers. Moved once from the watcher into
/// [`publish`], so the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Change {
    /// A pod changed.
    Pod(watcher::Event<Pod>),
    /// A node changed.
    Node(watcher::Event<Node>),
    /// A Service changed.
    Service(watcher::Event<Service>),
}

/// Watches pods and Services (of `namespace`, or all) and nodes through the
/// Kubernetes API (in-cluster service account, or the local kubeconfig) and
/// publishes them until shutdown.
pub async fn watch_pods<K: Sink>(
    namespace: Option<&str>,
    sink: &K,
    watcher_id: &str,
    shutdown: CancellationToken,
) -> Result<u64, WatchError> {
    use kube::runtime::WatchStreamExt;

    let client = kube::Client::try_default().await.map_err(WatchError::Api)?;
    let (pods, services): (kube::Api<Pod>, kube::Api<Service>) = match namespace {
        Some(ns) => (
            kube::Api::namespaced(client.clone(), ns),
            kube::Api::namespaced(client.clone(), ns),
        ),
        None => (
            kube::Api::all(client.clone()),
            kube::Api::all(client.clone()),
        ),
    };
    let nodes: kube::Api<Node> = kube::Api::all(client);
    let config = watcher::Config::default;
    let events = futures::stream::select_all([
        watcher(pods, config())
            .default_backoff()
            .map(|e| e.map(Change::Pod))
            .boxed(),
        watcher(nodes, config())
            .default_backoff()
            .map(|e| e.map(Change::Node))
            .boxed(),
        watcher(services, config())
            .default_backoff()
            .map(|e| e.map(Change::Service))
            .boxed(),
    ]);
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or_default()
    };
    publish(events, sink, watcher_id, now, shutdown).await
}

/// Why publishing stopped.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// No Kubernetes API could be reached or configured.
    #[error("connecting to the Kubernetes API (in-cluster service account or kubeconfig): {0}")]
    Api(kube::Error),
    /// The bus refused a record (after the producer's own retries).
    #[error("publishing pod metadata: {0}")]
    Publish(#[from] tapwire_plumbing::bus::BusError),
}

/// The bus record for the object a watcher event carries; `None` for list
/// markers and objects without a uid.
fn record<T>(
    event: watcher::Event<T>,
    now_ns: i64,
    convert: impl Fn(&T, i64, Option<i64>) -> Option<ClusterRecord>,
) -> Option<OutRecord> {
    let (object, deleted) = match event {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) => (o, false),
        watcher::Event::Delete(o) => (o, true),
        watcher::Event::Init | watcher::Event::InitDone => return None,
    };
    let record = convert(&object, now_ns, deleted.then_some(now_ns))?;
    match record.to_out_record() {
        Ok(out) => Some(out),
        Err(err) => {
            tracing::error!(error = %err, "cluster metadata does not encode; skipped");
            None
        }
    }
}

/// Publishes every change `changes` yields until the stream ends or
/// shutdown. Watch errors (API restarts, expired resource versions) are
/// logged; the watchers' own backoff re-lists. Returns the records published.
pub async fn publish<S, K>(
    changes: S,
    sink: &K,
    watcher_id: &str,
    mut now_ns: impl FnMut() -> i64,
    shutdown: CancellationToken,
) -> Result<u64, WatchError>
where
    S: Stream<Item = Result<Change, watcher::Error>>,
    K: Sink,
{
    let mut published = 0u64;
    let mut changes = std::pin::pin!(changes.ready_chunks(512));
    loop {
        let chunk = tokio::select! {
            _ = shutdown.cancelled() => break,
            chunk = changes.next() => match chunk { Some(c) => c, None => break },
        };
        let mut records = Vec::with_capacity(chunk.len());
        for change in chunk {
            let now = now_ns();
            let out = match change {
                Ok(Change::Pod(e)) => record(e, now, |p, o, d| {
                    pod_metadata(p, watcher_id, o, d).map(ClusterRecord::Pod)
                }),
                Ok(Change::Node(e)) => record(e, now, |n, o, d| {
                    node_metadata(n, watcher_id, o, d).map(ClusterRecord::Node)
                }),
                Ok(Change::Service(e)) => record(e, now, |s, o, d| {
                    service_metadata(s, watcher_id, o, d).map(ClusterRecord::Service)
                }),
                Err(err) => {
                    tracing::warn!(error = %err, "watch interrupted; the watcher retries");
                    None
                }
            };
            records.extend(out);
        }
        published += records.len() as u64;
        sink.send_batch(records).await?;
    }
    Ok(published)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapwire_plumbing::bus::memory::MemoryBus;
    use tapwire_schemas::{decode, topics};

    /// A pod as the API serves it (trimmed `kubectl get pod -o json`).
    const POD: &str = r#"{
      "apiVersion": "v1", "kind": "Pod",
      "metadata": {
        "name": "web-7d4b9c6f5-x2x9q", "namespace": "shop", "uid": "6f1c2a57-1111-4c1e-9a55-0c2b1e7d9a01",
        "resourceVersion": "48213", "labels": {"app": "web", "pod-template-hash": "7d4b9c6f5"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c6f5",
                             "uid": "aa", "controller": true}]
      },
      "spec": {"nodeName": "node-a", "containers": [{"name": "app", "image": "registry.example/web:1.4"}]},
      "status": {
        "phase": "Running", "hostIP": "192.168.10.11", "podIP": "10.1.0.7",
        "podIPs": [{"ip": "10.1.0.7"}, {"ip": "fd00::1:7"}],
        "startTime": "2026-11-23T10:00:00Z",
        "containerStatuses": [{
          "name": "app", "ready": true, "restartCount": 0, "image": "registry.example/web:1.4",
          "imageID": "registry.example/web@sha256:0123456789abcdef",
          "containerID": "containerd://3f4e5d6c7b8a", "state": {"running": {"startedAt": "2026-11-23T10:00:01Z"}}
        }]
      }
    }"#;

    fn pod() -> Pod {
        serde_json::from_str(POD).expect("pod json")
    }

    #[test]
    fn a_kubectl_listing_becomes_records() {
        let mut pod: serde_json::Value = serde_json::from_str(POD).expect("pod json");
        pod["kind"] = "Pod".into();
        let listing = serde_json::json!({
            "apiVersion": "v1", "kind": "List",
            "items": [
                pod,
                {"kind": "Node", "metadata": {"name": "node-a", "uid": "node-uid"},
                 "status": {"addresses": [{"type": "InternalIP", "address": "192.168.10.11"}]}},
                {"kind": "Service", "metadata": {"name": "kube-dns", "namespace": "kube-system", "uid": "svc"},
                 "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"]}},
                {"kind": "ConfigMap", "metadata": {"name": "skipped"}}
            ]
        });
        let records = records_from_listing(&listing.to_string(), 0).expect("listing");
        assert_eq!(records.len(), 3);
        assert!(matches!(&records[0], ClusterRecord::Pod(p) if p.name == "web-7d4b9c6f5-x2x9q"));
        assert!(matches!(&records[1], ClusterRecord::Node(n) if n.name == "node-a"));
        assert!(matches!(&records[2], ClusterRecord::Service(s) if s.name == "kube-dns"));
        assert!(records_from_listing("{\"items\": 3}", 0).is_err());
    }

    #[test]
    fn a_running_pod_becomes_its_metadata_record() {
        let m = pod_metadata(&pod(), "watch-1", 42, None).expect("record");
        assert_eq!(m.uid, "6f1c2a57-1111-4c1e-9a55-0c2b1e7d9a01");
        assert_eq!(
            (m.name.as_str(), m.namespace.as_str()),
            ("web-7d4b9c6f5-x2x9q", "shop")
        );
        assert_eq!(m.header.node, "node-a");
        assert_eq!(
            m.header.node_ip.map(|ip| ip.to_string()).as_deref(),
            Some("192.168.10.11")
        );
        let ips: Vec<String> = m.ips.iter().map(ToString::to_string).collect();
        assert_eq!(ips, ["10.1.0.7", "fd00::1:7"]);
        assert_eq!(m.containers[0].id, "3f4e5d6c7b8a");
        assert_eq!(
            m.containers[0].image_digest.as_deref(),
            Some("sha256:0123456789abcdef")
        );
        assert_eq!(
            m.workload,
            Some(Workload {
                kind: "Deployment".into(),
                name: "web".into()
            })
        );
        assert_eq!(m.labels["app"], "web");
        assert_eq!(m.start_ns, Some(1_795_428_000_000_000_000));
        assert_eq!(m.end_ns, None);
        assert!(!m.host_network);
    }

    #[test]
    fn the_specs_security_settings_are_carried() {
        let mut value: serde_json::Value = serde_json::from_str(POD).expect("pod json");
        value["spec"] = serde_json::json!({
            "nodeName": "node-a", "hostPID": true,
            "securityContext": {"runAsUser": 0},
            "volumes": [{"name": "sock", "hostPath": {"path": "/run/containerd/containerd.sock"}},
                        {"name": "tmp", "emptyDir": {}}],
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [{"name": "app", "image": "registry.example/web:1.4",
                "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN"]},
                                    "readOnlyRootFilesystem": true},
                "resources": {"limits": {"memory": "128Mi"}}}]
        });
        let pod: Pod = serde_json::from_value(value).expect("pod");
        let security = pod_metadata(&pod, "w", 1, None)
            .expect("record")
            .security
            .expect("security");
        assert!(security.host_pid && !security.host_ipc);
        assert_eq!(security.run_as_user, Some(0));
        assert_eq!(
            security.host_path_volumes,
            ["/run/containerd/containerd.sock"]
        );
        let names: Vec<&str> = security
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["init", "app"]);
        let app = &security.containers[1];
        assert!(app.privileged && app.read_only_root_filesystem);
        assert_eq!(app.added_capabilities, ["NET_ADMIN"]);
        assert_eq!(
            (app.cpu_limit.as_deref(), app.memory_limit.as_deref()),
            (None, Some("128Mi"))
        );
        assert!(!security.containers[0].privileged);
    }

    #[test]
    fn a_finished_pod_ends_when_its_last_container_finished() {
        let mut p = pod();
        let status = p.status.as_mut().expect("status");
        status.phase = Some("Succeeded".into());
        let finished: serde_json::Value = serde_json::json!({"terminated": {"exitCode": 0, "finishedAt": "2026-11-23T11:00:00Z"}});
        status.container_statuses.as_mut().expect("statuses")[0].state =
            Some(serde_json::from_value(finished).expect("state"));
        let m = pod_metadata(&p, "w", 99, None).expect("record");
        assert_eq!(m.end_ns, Some(1_795_431_600_000_000_000));
    }

    #[tokio::test]
    async fn watch_events_are_published_and_a_deleted_pod_keeps_its_record() {
        let bus = MemoryBus::new();
        bus.create_topic(topics::PODS, 1);
        let mut other = pod();
        other.metadata.uid = Some("uid-2".into());
        other.metadata.name = Some("web-2".into());
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "node-a", "uid": "node-uid", "resourceVersion": "7"},
            "status": {"addresses": [
                {"type": "InternalIP", "address": "192.168.10.11"},
                {"type": "Hostname", "address": "node-a"}
            ]}
        }))
        .expect("node");
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "uid": "svc-uid",
                         "creationTimestamp": "2026-11-23T09:00:00Z"},
            "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "ports": [{"port": 53}], "selector": {"k8s-app": "kube-dns"}}
        }))
        .expect("service");
        let events = futures::stream::iter(vec![
            Ok(Change::Pod(watcher::Event::Init)),
            Ok(Change::Pod(watcher::Event::InitApply(pod()))),
            Ok(Change::Pod(watcher::Event::InitDone)),
            Ok(Change::Node(watcher::Event::Apply(node))),
            Ok(Change::Service(watcher::Event::Apply(service))),
            Ok(Change::Pod(watcher::Event::Apply(other))),
            Ok(Change::Pod(watcher::Event::Delete(pod()))),
        ]);
        let mut clock = 1000;
        let published = publish(
            events,
            &bus.sink(),
            "w",
            move || {
                clock += 1;
                clock
            },
            CancellationToken::new(),
        )
        .await
        .expect("published");
        assert_eq!(published, 5);
        let messages = bus.messages(topics::PODS);
        let node: NodeMetadata = decode(&messages[1].payload).expect("node record");
        assert_eq!(
            node.addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["192.168.10.11"]
        );
        let service: ServiceMetadata = decode(&messages[2].payload).expect("service record");
        assert_eq!(
            (service.name.as_str(), service.ports.as_slice()),
            ("kube-dns", &[53u16][..])
        );
        assert_eq!(service.cluster_ips[0].to_string(), "10.96.0.10");
        assert_eq!(messages[2].key.as_deref(), Some(&b"svc-uid"[..]));
        let records: Vec<PodMetadata> = messages
            .iter()
            .filter_map(|m| decode(&m.payload).ok())
            .collect();
        assert_eq!(records.len(), 3);
        let last = records.last().expect("deletion");
        assert_eq!(last.uid, "6f1c2a57-1111-4c1e-9a55-0c2b1e7d9a01");
        assert!(
            last.end_ns.is_some(),
            "deleted pods are published with an end time"
        );
        assert_eq!(messages[4].key.as_deref(), Some(last.uid.as_bytes()));
        assert_ne!(records[0].header.id, last.header.id);
    }
}
