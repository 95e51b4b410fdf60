/* Records the eBPF programs put in the "events" ring buffer. Shared with
 * Rust (capture/src/ebpf/wire.rs), where #[repr(C)] twins are checked field
 * by field against this object's BTF by a test. Keep both in step. */
#ifndef TAPWIRE_H
#define TAPWIRE_H

#define TW_COMM_LEN 16
#define TW_PATH_LEN 256
#define TW_ARGS_LEN 256
#define TW_NAME_LEN 256
#define TW_LOOKUP_ADDRS 8
#define TW_DNS_PAYLOAD 512

enum tw_kind {
	TW_TCP_STATE = 1,
	TW_PROC_EXEC = 2,
	TW_PROC_EXIT = 3,
	TW_FILE = 4,
	TW_UDP_CONNECT = 5,
	TW_DNS_LOOKUP = 6,
	TW_DNS_SEND = 7,
	TW_NET_BLOCKED = 8,
};


enum tw_file_op {
	TW_FILE_OPEN = 1, /* openat with write, create or truncate flags */
	TW_FILE_UNLINK = 2,
	TW_FILE_RENAME = 3,
	TW_FILE_CHMOD = 4,
	TW_FILE_CHOWN = 5,
};

/* Who the current task is, taken in the kernel at the event, so that a
 * process that exits before the agent reads its record is still known. */
struct tw_task_ids {
	__u64 cgroup_id; /* bpf_get_current_cgroup_id: the cgroup v2 directory's inode */
	__u32 ppid; /* tgid of the real parent */
	__u32 euid;
	__u32 egid;
	__u32 pad;
};

/* sock:inet_sock_set_state, TCP only. */
struct tw_tcp_event {
	__u32 kind;
	__u32 pid; /* tgid of the current task (meaningless in softirq) */
	__u64 ts_ns; /* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
	__u64 skaddr;
	__u64 bytes_acked; /* at TCP_CLOSE only */
	__u64 bytes_received; /* at TCP_CLOSE only */
	/* The current task, for CLOSE -> SYN_SENT and CLOSE -> LISTEN only (the
	 * owner's process context); zero otherwise. */
	struct tw_task_ids task;
	__u32 netns; /* inode of the socket's network namespace */
	__s32 oldstate;
	__s32 newstate;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u16 fin_received; /* at TCP_CLOSE: SOCK_DONE, the peer's FIN was processed */
	__u8 saddr[16];
	__u8 daddr[16];
	char comm[TW_COMM_LEN];
};

/* sched:sched_process_exec and sched_process_exit. */
struct tw_proc_event {
	__u32 kind;
	__u32 pid;
	__u64 ts_ns;
	__u64 cgroup_id;
	__u32 ppid;
	__u32 uid;
	__u32 euid;
	__u32 egid;
	__s32 exit_code;
	__u32 args_len;
	__u32 blocked_rule; /* exec: rule index + 1 when enforcement killed it */
	__u32 pad;
	char comm[TW_COMM_LEN];
	char filename[TW_PATH_LEN];
	char args[TW_ARGS_LEN]; /* NUL-separated argv, args_len bytes */
};

/* syscalls:sys_enter_openat|unlinkat|renameat2|fchmodat|fchownat. Paths
 * as the caller gave them (relative to its cwd or dfd); the agent resolves
 * and filters them by prefix. */
struct tw_file_event {
	__u32 kind;
	__u32 pid;
	__u64 ts_ns;
	__u32 op;
	__u32 flags; /* openat flags, unlinkat/renameat2 flags */
	__u32 mode; /* openat/fchmodat mode */
	__u32 owner_uid; /* fchownat */
	__u32 owner_gid; /* fchownat */
	__s32 dfd; /* directory fd of the (new) path */
	char comm[TW_COMM_LEN];
	char path[TW_PATH_LEN]; /* new path for renames */
	char old_path[TW_PATH_LEN];
};

/* A successful connect() of an AF_INET/AF_INET6 SOCK_DGRAM socket, read
 * from the socket at syscalls:sys_exit_connect: the kernel has bound the
 * local address and port by then. */
struct tw_udp_event {
	__u32 kind;
	__u32 pid;
	__u64 ts_ns;
	struct tw_task_ids task;
	__u32 netns;
	__u16 family;
	__u16 sport;
	__u16 dport;
	__u16 pad;
	__u8 saddr[16];
	__u8 daddr[16];
	char comm[TW_COMM_LEN];
};

/* A getaddrinfo() call and its result, from a uprobe at its entry (the name,
 * the result pointer) and a uretprobe at its return (the addresses). */
struct tw_lookup_event {
	__u32 kind;
	__u32 pid;
	__u64 ts_ns; /* at the return */
	struct tw_task_ids task;
	__s32 ret; /* getaddrinfo's return: 0, or an EAI_* code */
	__u32 naddrs; /* entries of addrs used */
	__u16 families[TW_LOOKUP_ADDRS]; /* AF_INET or AF_INET6 */
	__u8 addrs[TW_LOOKUP_ADDRS][16];
	char comm[TW_COMM_LEN];
	char name[TW_NAME_LEN];
};

/* A datagram sent to port 53 or 5353 (sendto, sendmsg, sendmmsg: the first
 * message), read at the syscall's return: the socket's addresses (the
 * source port is bound by then) and the first bytes of the payload. */
struct tw_dns_send_event {
	__u32 kind;
	__u32 pid;
	__u64 ts_ns;
	struct tw_task_ids task;
	__u32 netns;
	__u16 family;
	__u16 sport;
	__u16 dport;
	__u16 len; /* payload bytes copied */
	__u8 saddr[16];
	__u8 daddr[16];
	char comm[TW_COMM_LEN];
	__u8 payload[TW_DNS_PAYLOAD];
};


/* Enforcement (cgroup programs and the exec tracepoint), by the agent's
 * maps: which cgroups are enforced, and how. */
enum tw_enforce_flags {
	TW_ENFORCE_EGRESS = 1,
	TW_ENFORCE_INGRESS = 2,
	TW_ENFORCE_EXEC = 4,
};

enum tw_direction {
	TW_DIR_EGRESS = 1,
	TW_DIR_INGRESS = 2,
};

/* Key of the "net_rules" LPM trie: the fixed part (cgroup, direction,
 * protocol, port, family: 128 bits) is always matched whole; the remote
 * address by prefix, so prefixlen = 128 + the address prefix. Port 0: every
 * port without entries of its own. */
struct tw_net_match {
	__u32 cgroup_lo;
	__u32 cgroup_hi;
	__u8 direction;
	__u8 protocol;
	__u16 port; /* host order */
	__u8 family; /* 4 or 6 */
	__u8 pad[3];
	__u8 addr[16];
};

struct tw_net_key {
	__u32 prefixlen;
	struct tw_net_match m;
};

struct tw_net_verdict {
	__u32 deny;
	__u32 rule; /* index into the agent's table of rule names */
};

/* Key of the "exec_rules" hash: an executable path (as exec names it,
 * zero-padded) in one cgroup. */
struct tw_exec_key {
	__u64 cgroup_id;
	char path[TW_PATH_LEN];
};

/* A connection the kernel refused: a connect or sendmsg that returned
 * EPERM (egress), or a new inbound connection's packet dropped (ingress). */
struct tw_block_event {
	__u32 kind;
	__u32 pid; /* 0 for ingress (softirq) */
	__u64 ts_ns;
	struct tw_task_ids task; /* zero for ingress but the cgroup id */
	__u32 rule;
	__u32 netns;
	__u16 family;
	__u16 sport;
	__u16 dport;
	__u8 protocol;
	__u8 direction;
	__u8 saddr[16];
	__u8 daddr[16];
	char comm[TW_COMM_LEN];
};

#endif
