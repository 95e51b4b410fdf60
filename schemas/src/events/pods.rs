//! Cluster metadata published by k8s-watch: pods, nodes and services.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::EventHeader;
use crate::Ip;

/// A pod's owning controller (`workload.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Workload {
    /// Deployment, StatefulSet, DaemonSet, Job, CronJob, ReplicaSet or Pod.
    pub kind: String,
    /// Its name.
    pub name: String,
}

/// A container of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// Runtime id without the `runtime://` prefix.
    pub id: String,
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Image digest, when known.
    pub image_digest: Option<String>,
}

/// A pod over its lifetime (`pod_metadata.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodMetadata {
    /// Common fields: `node` is the pod's node.
    pub header: EventHeader,
    /// Pod uid (the topic key).
    pub uid: String,
    /// Pod name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Pod IPs.
    pub ips: Vec<Ip>,
    /// Whether the pod shares the node's network.
    pub host_network: bool,
    /// Containers.
    pub containers: Vec<Container>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Owning workload.
    pub workload: Option<Workload>,
    /// Start time, ns since the epoch.
    pub start_ns: Option<i64>,
    /// Deletion time, ns since the epoch.
    pub end_ns: Option<i64>,
    /// The spec's security-relevant settings (v3); `None` from older
    /// watchers.
    #[serde(default)]
    pub security: Option<PodSecurity>,
}

/// What a pod's spec says about isolation and privileges (`PodSecurity`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PodSecurity {
    /// `hostPID`.
    pub host_pid: bool,
    /// `hostIPC`.
    pub host_ipc: bool,
    /// Host paths of `hostPath` volumes.
    pub host_path_volumes: Vec<String>,
    /// The pod's `securityContext.runAsNonRoot`.
    pub run_as_non_root: Option<bool>,
    /// The pod's `securityContext.runAsUser`.
    pub run_as_user: Option<i64>,
    /// Every container and init container, in spec order.
    pub containers: Vec<ContainerSecurity>,
}

/// One container's security settings (`ContainerSecurity`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContainerSecurity {
    /// Container name.
    pub name: String,
    /// The image as the spec writes it (tag or digest).
    pub image: String,
    /// `securityContext.privileged`.
    pub privileged: bool,
    /// `securityContext.allowPrivilegeEscalation`.
    pub allow_privilege_escalation: Option<bool>,
    /// `securityContext.capabilities.add`.
    pub added_capabilities: Vec<String>,
    /// `securityContext.runAsNonRoot` (the container's own).
    pub run_as_non_root: Option<bool>,
    /// `securityContext.runAsUser` (the container's own).
    pub run_as_user: Option<i64>,
    /// `securityContext.readOnlyRootFilesystem`.
    pub read_only_root_filesystem: bool,
    /// `resources.limits.cpu`.
    pub cpu_limit: Option<String>,
    /// `resources.limits.memory`.
    pub memory_limit: Option<String>,
}

/// A node (`node_metadata.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMetadata {
    /// Common fields: `node` is the node itself.
    pub header: EventHeader,
    /// Node uid (the topic key).
    pub uid: String,
    /// Node name.
    pub name: String,
    /// Internal and external addresses.
    pub addresses: Vec<Ip>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Deletion time, ns since the epoch.
    pub end_ns: Option<i64>,
}

/// A Service (`service_metadata.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceMetadata {
    /// Common fields.
    pub header: EventHeader,
    /// Service uid (the topic key).
    pub uid: String,
    /// Service name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Cluster IPs; empty for headless services.
    pub cluster_ips: Vec<Ip>,
    /// Service ports.
    pub ports: Vec<u16>,
    /// Pod selector.
    pub selector: BTreeMap<String, String>,
    /// Creation time, ns since the epoch.
    pub start_ns: Option<i64>,
    /// Deletion time, ns since the epoch.
    pub end_ns: Option<i64>,
}
