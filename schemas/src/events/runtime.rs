//! Runtime records: process and file events.

use serde::{Deserialize, Serialize};

use super::EventHeader;

/// Kinds of runtime event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    /// A process executed a binary.
    ProcessExec,
    /// A process exited.
    ProcessExit,
    /// A file was opened for writing.
    FileOpen,
    /// A file was created.
    FileCreate,
    /// A file was written.
    FileWrite,
    /// A file was deleted.
    FileDelete,
    /// A file's mode changed.
    FileChmod,
    /// A file's owner changed.
    FileChown,
    /// A file was renamed.
    FileRename,
}

/// A process or file event (`runtime_event.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeEvent {
    /// Common fields.
    pub header: EventHeader,
    /// What happened.
    pub kind: RuntimeKind,
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// Real user id.
    pub uid: u32,
    /// Effective user id.
    pub euid: u32,
    /// Effective group id.
    pub egid: u32,
    /// Path of the executable.
    pub binary: String,
    /// Bounded command line.
    pub command_line: Option<String>,
    /// Container, `None` for host processes.
    pub container_id: Option<String>,
    /// File path (the new path for renames).
    pub path: Option<String>,
    /// Previous path of a rename.
    pub old_path: Option<String>,
    /// mode_t bits for create and chmod.
    pub mode: Option<u32>,
    /// New owner for chown.
    pub owner_uid: Option<u32>,
    /// New group for chown.
    pub owner_gid: Option<u32>,
    /// Exit code for process_exit.
    pub exit_code: Option<i32>,
    /// process_exec only: set when the node killed the process before its
    /// first instruction (an enforce-mode denial): `namespace/policy/rule`.
    #[serde(default)]
    pub blocked_by: Option<String>,
}
