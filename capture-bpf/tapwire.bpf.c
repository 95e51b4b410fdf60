// SPDX-License-Identifier: GPL-2.0
/* tapwire's tracepoint programs: TCP state changes and process exec/exit,
 * written to one ring buffer. A record that does not fit is counted in
 * "lost" (per CPU) and the agent reports it as a loss record. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "tapwire.h"

#define IPPROTO_TCP_ 6

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* Keep the struct types in the object's BTF for the layout test. */
struct tw_tcp_event _tw_tcp_event = {};
struct tw_proc_event _tw_proc_event = {};
struct tw_file_event _tw_file_event = {};
struct tw_udp_event _tw_udp_event = {};
struct tw_task_ids _tw_task_ids = {};
struct tw_lookup_event _tw_lookup_event = {};
struct tw_dns_send_event _tw_dns_send_event = {};
struct tw_block_event _tw_block_event = {};
struct tw_net_key _tw_net_key = {};
struct tw_net_match _tw_net_match = {};
struct tw_net_verdict _tw_net_verdict = {};
struct tw_exec_key _tw_exec_key = {};

/* Enforcement state, written by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* cgroup id */
	__type(value, __u32); /* enum tw_enforce_flags */
} enforced SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1 << 18);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tw_net_key);
	__type(value, struct tw_net_verdict);
} net_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tw_exec_key);
	__type(value, __u32); /* rule index */
} exec_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tw_exec_key);
} exec_scratch SEC(".maps");

/* connect() calls on UDP sockets between sys_enter and sys_exit, by thread. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64); /* struct sock * */
} udp_connecting SEC(".maps");

static __always_inline void count_loss(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&lost, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
}

/* The process's name: its thread group leader's comm (a thread may have
 * renamed itself, as dig's "isc-net-0000" does). */
static __always_inline void process_comm(char *comm)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);
	if (bpf_probe_read_kernel_str(comm, TW_COMM_LEN, &leader->comm) < 0)
		bpf_get_current_comm(comm, TW_COMM_LEN);
}

static __always_inline void task_ids(struct tw_task_ids *ids)
{
	struct task_struct *task = bpf_get_current_task_btf();
	ids->cgroup_id = bpf_get_current_cgroup_id();
	ids->ppid = BPF_CORE_READ(task, real_parent, tgid);
	ids->euid = BPF_CORE_READ(task, cred, euid.val);
	ids->egid = BPF_CORE_READ(task, cred, egid.val);
	ids->pad = 0;
}

static __always_inline __u32 netns_of(struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/* The socket's local and peer addresses (16 bytes each, 4 used for IPv4). */
static __always_inline void sock_addrs(struct sock *sk, __u16 family, __u8 *saddr, __u8 *daddr)
{
	__builtin_memset(saddr, 0, 16);
	__builtin_memset(daddr, 0, 16);
	if (family == 2) {
		__u32 src = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 dst = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(saddr, &src, 4);
		__builtin_memcpy(daddr, &dst, 4);
	} else {
		bpf_probe_read_kernel(saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_probe_read_kernel(daddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
}

SEC("tracepoint/sock/inet_sock_set_state")
int tw_sock_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol != IPPROTO_TCP_)
		return 0;
	struct tw_tcp_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_loss();
		return 0;
	}
	__u64 id = bpf_get_current_pid_tgid();
	e->kind = TW_TCP_STATE;
	e->pid = id >> 32;
	e->ts_ns = bpf_ktime_get_ns();
	e->skaddr = (__u64)ctx->skaddr;
	e->oldstate = ctx->oldstate;
	e->newstate = ctx->newstate;
	e->sport = ctx->sport;
	e->dport = ctx->dport;
	e->family = ctx->family;
	e->fin_received = 0;
	e->bytes_acked = 0;
	e->bytes_received = 0;
	e->netns = netns_of((struct sock *)ctx->skaddr);
	if (ctx->oldstate == 7 /* TCP_CLOSE */ &&
	    (ctx->newstate == 2 /* TCP_SYN_SENT */ || ctx->newstate == 10 /* TCP_LISTEN */))
		task_ids(&e->task);
	else
		__builtin_memset(&e->task, 0, sizeof(e->task));
	if (ctx->family == 2) {
		__builtin_memset(e->saddr, 0, 16);
		__builtin_memset(e->daddr, 0, 16);
		/* The verifier refuses ctx pointer arithmetic: copy through the helper. */
		bpf_probe_read_kernel(e->saddr, 4, ctx->saddr);
		bpf_probe_read_kernel(e->daddr, 4, ctx->daddr);
	} else {
		bpf_probe_read_kernel(e->saddr, 16, ctx->saddr_v6);
		bpf_probe_read_kernel(e->daddr, 16, ctx->daddr_v6);
	}
	if (ctx->newstate == 7 /* TCP_CLOSE */) {
		struct tcp_sock *tp = (struct tcp_sock *)ctx->skaddr;
		e->bytes_acked = BPF_CORE_READ(tp, bytes_acked);
		e->bytes_received = BPF_CORE_READ(tp, bytes_received);
		/* tcp_fin() sets SOCK_DONE (bit 1 of sk_flags); whether the
		 * peer's FIN is in bytes_received cannot be told from the
		 * states alone (an orphaned FIN_WAIT2 socket may close before
		 * or after it arrives). */
		struct sock *sk = (struct sock *)ctx->skaddr;
		e->fin_received = (BPF_CORE_READ(sk, __sk_common.skc_flags) >> 1) & 1;
	}
	process_comm(e->comm);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

static __always_inline void fill_proc(struct tw_proc_event *e, __u32 kind)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 id = bpf_get_current_pid_tgid();
	__u64 ugid = bpf_get_current_uid_gid();
	e->kind = kind;
	e->pid = id >> 32;
	e->ts_ns = bpf_ktime_get_ns();
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = (__u32)ugid;
	e->euid = BPF_CORE_READ(task, cred, euid.val);
	e->egid = BPF_CORE_READ(task, cred, egid.val);
	e->exit_code = 0;
	e->args_len = 0;
	e->blocked_rule = 0;
	e->pad = 0;
	e->filename[0] = 0;
	e->args[0] = 0;
	process_comm(e->comm);
}

SEC("tracepoint/sched/sched_process_exec")
int tw_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	struct tw_proc_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_loss();
		return 0;
	}
	fill_proc(e, TW_PROC_EXEC);
	unsigned int off = ctx->__data_loc_filename & 0xFFFF;
	bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), (void *)ctx + off);
	/* Enforcement: a denied executable is killed here, before it runs
	 * its first instruction (the signal is taken on the return to user
	 * space). */
	__u64 cg = e->cgroup_id;
	__u32 *flags = bpf_map_lookup_elem(&enforced, &cg);
	if (flags && (*flags & TW_ENFORCE_EXEC)) {
		__u32 zero = 0;
		struct tw_exec_key *k = bpf_map_lookup_elem(&exec_scratch, &zero);
		if (k) {
			__builtin_memset(k, 0, sizeof(*k));
			k->cgroup_id = cg;
			bpf_probe_read_kernel_str(k->path, sizeof(k->path), (void *)ctx + off);
			__u32 *rule = bpf_map_lookup_elem(&exec_rules, k);
			if (rule) {
				bpf_send_signal(9);
				e->blocked_rule = *rule + 1;
			}
		}
	}
	struct task_struct *task = bpf_get_current_task_btf();
	unsigned long start = BPF_CORE_READ(task, mm, arg_start);
	unsigned long end = BPF_CORE_READ(task, mm, arg_end);
	unsigned long len = end - start;
	if (len > TW_ARGS_LEN - 1)
		len = TW_ARGS_LEN - 1;
	len &= (TW_ARGS_LEN - 1);
	if (len > 0 && bpf_probe_read_user(e->args, len, (void *)start) == 0)
		e->args_len = len;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int tw_exit(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	/* Only the thread group leader: the process exits with it. */
	if ((__u32)id != (id >> 32))
		return 0;
	struct tw_proc_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_loss();
		return 0;
	}
	fill_proc(e, TW_PROC_EXIT);
	struct task_struct *task = bpf_get_current_task_btf();
	e->exit_code = BPF_CORE_READ(task, exit_code);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

#define O_WRONLY_ 01
#define O_RDWR_ 02
#define O_CREAT_ 0100
#define O_TRUNC_ 01000

static __always_inline struct tw_file_event *file_event(__u32 op)
{
	struct tw_file_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_loss();
		return 0;
	}
	e->kind = TW_FILE;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->ts_ns = bpf_ktime_get_ns();
	e->op = op;
	e->flags = 0;
	e->mode = 0;
	e->owner_uid = 0;
	e->owner_gid = 0;
	e->dfd = 0;
	e->path[0] = 0;
	e->old_path[0] = 0;
	process_comm(e->comm);
	return e;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int tw_openat(struct trace_event_raw_sys_enter *ctx)
{
	__u32 flags = ctx->args[2];
	if (!(flags & (O_WRONLY_ | O_RDWR_ | O_CREAT_ | O_TRUNC_)))
		return 0;
	struct tw_file_event *e = file_event(TW_FILE_OPEN);
	if (!e)
		return 0;
	e->dfd = ctx->args[0];
	e->flags = flags;
	e->mode = ctx->args[3];
	bpf_probe_read_user_str(e->path, sizeof(e->path), (void *)ctx->args[1]);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_unlinkat")
int tw_unlinkat(struct trace_event_raw_sys_enter *ctx)
{
	struct tw_file_event *e = file_event(TW_FILE_UNLINK);
	if (!e)
		return 0;
	e->dfd = ctx->args[0];
	e->flags = ctx->args[2];
	bpf_probe_read_user_str(e->path, sizeof(e->path), (void *)ctx->args[1]);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_renameat2")
int tw_renameat2(struct trace_event_raw_sys_enter *ctx)
{
	struct tw_file_event *e = file_event(TW_FILE_RENAME);
	if (!e)
		return 0;
	e->dfd = ctx->args[2];
	e->flags = ctx->args[4];
	bpf_probe_read_user_str(e->old_path, sizeof(e->old_path), (void *)ctx->args[1]);
	bpf_probe_read_user_str(e->path, sizeof(e->path), (void *)ctx->args[3]);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_fchmodat")
int tw_fchmodat(struct trace_event_raw_sys_enter *ctx)
{
	struct tw_file_event *e = file_event(TW_FILE_CHMOD);
	if (!e)
		return 0;
	e->dfd = ctx->args[0];
	e->mode = ctx->args[2];
	bpf_probe_read_user_str(e->path, sizeof(e->path), (void *)ctx->args[1]);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_fchownat")
int tw_fchownat(struct trace_event_raw_sys_enter *ctx)
{
	struct tw_file_event *e = file_event(TW_FILE_CHOWN);
	if (!e)
		return 0;
	e->dfd = ctx->args[0];
	e->owner_uid = ctx->args[2];
	e->owner_gid = ctx->args[3];
	bpf_probe_read_user_str(e->path, sizeof(e->path), (void *)ctx->args[1]);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* The legacy path syscalls (x86_64 glibc still calls them for rename(),
 * unlink(), chmod(), chown() and open()): AT_FDCWD-relative. */
#define AT_FDCWD_ -100

static __always_inline int path_event(__u32 op, const void *path, const void *old_path,
				      __u32 flags, __u32 mode, __u32 uid, __u32 gid)
{
	struct tw_file_event *e = file_event(op);
	if (!e)
		return 0;
	e->dfd = AT_FDCWD_;
	e->flags = flags;
	e->mode = mode;
	e->owner_uid = uid;
	e->owner_gid = gid;
	bpf_probe_read_user_str(e->path, sizeof(e->path), path);
	if (old_path)
		bpf_probe_read_user_str(e->old_path, sizeof(e->old_path), old_path);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_open")
int tw_open(struct trace_event_raw_sys_enter *ctx)
{
	__u32 flags = ctx->args[1];
	if (!(flags & (O_WRONLY_ | O_RDWR_ | O_CREAT_ | O_TRUNC_)))
		return 0;
	return path_event(TW_FILE_OPEN, (void *)ctx->args[0], 0, flags, ctx->args[2], 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_creat")
int tw_creat(struct trace_event_raw_sys_enter *ctx)
{
	return path_event(TW_FILE_OPEN, (void *)ctx->args[0], 0, O_CREAT_ | O_WRONLY_ | O_TRUNC_,
			  ctx->args[1], 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_unlink")
int tw_unlink(struct trace_event_raw_sys_enter *ctx)
{
	return path_event(TW_FILE_UNLINK, (void *)ctx->args[0], 0, 0, 0, 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_rename")
int tw_rename(struct trace_event_raw_sys_enter *ctx)
{
	return path_event(TW_FILE_RENAME, (void *)ctx->args[1], (void *)ctx->args[0], 0, 0, 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_renameat")
int tw_renameat(struct trace_event_raw_sys_enter *ctx)
{
	struct tw_file_event *e = file_event(TW_FILE_RENAME);
	if (!e)
		return 0;
	e->dfd = ctx->args[2];
	bpf_probe_read_user_str(e->old_path, sizeof(e->old_path), (void *)ctx->args[1]);
	bpf_probe_read_user_str(e->path, sizeof(e->path), (void *)ctx->args[3]);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_chmod")
int tw_chmod(struct trace_event_raw_sys_enter *ctx)
{
	return path_event(TW_FILE_CHMOD, (void *)ctx->args[0], 0, 0, ctx->args[1], 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_fchmodat2")
int tw_fchmodat2(struct trace_event_raw_sys_enter *ctx)
{
	struct tw_file_event *e = file_event(TW_FILE_CHMOD);
	if (!e)
		return 0;
	e->dfd = ctx->args[0];
	e->mode = ctx->args[2];
	e->flags = ctx->args[3];
	bpf_probe_read_user_str(e->path, sizeof(e->path), (void *)ctx->args[1]);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_chown")
int tw_chown(struct trace_event_raw_sys_enter *ctx)
{
	return path_event(TW_FILE_CHOWN, (void *)ctx->args[0], 0, 0, 0, ctx->args[1], ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_lchown")
int tw_lchown(struct trace_event_raw_sys_enter *ctx)
{
	return path_event(TW_FILE_CHOWN, (void *)ctx->args[0], 0, 0, 0, ctx->args[1], ctx->args[2]);
}

#define SOCK_DGRAM_ 2

/* The struct sock of fd when it is a datagram socket, else 0. */
static __always_inline __u64 udp_sock(int fd)
{
	if (fd < 0 || fd > 65535)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct file **fds = BPF_CORE_READ(task, files, fdt, fd);
	struct file *f = 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return 0;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	if (!sock || BPF_CORE_READ(sock, type) != SOCK_DGRAM_)
		return 0;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != 2 && family != 10)
		return 0;
	return (__u64)sk;
}

/* Remembers the socket of a UDP connect() until the syscall returns: only
 * then are the local address and port bound. */
SEC("tracepoint/syscalls/sys_enter_connect")
int tw_connect(struct trace_event_raw_sys_enter *ctx)
{
	__u64 sk = udp_sock(ctx->args[0]);
	if (!sk)
		return 0;
	__u16 family = 0;
	if (bpf_probe_read_user(&family, sizeof(family), (void *)ctx->args[1]))
		return 0;
	if (family != 2 && family != 10)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	bpf_map_update_elem(&udp_connecting, &id, &sk, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int tw_connect_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 *skp = bpf_map_lookup_elem(&udp_connecting, &id);
	if (!skp)
		return 0;
	struct sock *sk = (struct sock *)*skp;
	bpf_map_delete_elem(&udp_connecting, &id);
	if (ctx->ret != 0)
		return 0;
	struct tw_udp_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_loss();
		return 0;
	}
	e->kind = TW_UDP_CONNECT;
	e->pid = id >> 32;
	e->ts_ns = bpf_ktime_get_ns();
	task_ids(&e->task);
	e->netns = netns_of(sk);
	e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->dport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	e->pad = 0;
	sock_addrs(sk, e->family, e->saddr, e->daddr);
	process_comm(e->comm);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* getaddrinfo(node, service, hints, res) between its entry and return. */
struct tw_lookup_call {
	__u64 node; /* const char * */
	__u64 res; /* struct addrinfo ** */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct tw_lookup_call);
} lookups SEC(".maps");

SEC("uprobe")
int tw_getaddrinfo(struct pt_regs *ctx)
{
	struct tw_lookup_call call = {
		.node = PT_REGS_PARM1(ctx),
		.res = PT_REGS_PARM4(ctx),
	};
	if (!call.node)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	bpf_map_update_elem(&lookups, &id, &call, BPF_ANY);
	return 0;
}

/* struct addrinfo (glibc and musl, LP64): ai_family at 4, ai_addr at 24,
 * ai_next at 40. */
#define AI_FAMILY 4
#define AI_ADDR 24
#define AI_NEXT 40

SEC("uretprobe")
int tw_getaddrinfo_ret(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tw_lookup_call *call = bpf_map_lookup_elem(&lookups, &id);
	if (!call)
		return 0;
	struct tw_lookup_call c = *call;
	bpf_map_delete_elem(&lookups, &id);
	struct tw_lookup_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_loss();
		return 0;
	}
	e->kind = TW_DNS_LOOKUP;
	e->pid = id >> 32;
	e->ts_ns = bpf_ktime_get_ns();
	task_ids(&e->task);
	e->ret = (__s32)PT_REGS_RC(ctx);
	e->naddrs = 0;
	__builtin_memset(e->families, 0, sizeof(e->families));
	__builtin_memset(e->addrs, 0, sizeof(e->addrs));
	process_comm(e->comm);
	if (bpf_probe_read_user_str(e->name, sizeof(e->name), (void *)c.node) < 0)
		e->name[0] = 0;
	__u64 ai = 0;
	if (e->ret == 0 && c.res)
		bpf_probe_read_user(&ai, sizeof(ai), (void *)c.res);
	for (int i = 0; i < TW_LOOKUP_ADDRS; i++) {
		if (!ai)
			break;
		__s32 family = 0;
		__u64 addr = 0;
		bpf_probe_read_user(&family, sizeof(family), (void *)(ai + AI_FAMILY));
		bpf_probe_read_user(&addr, sizeof(addr), (void *)(ai + AI_ADDR));
		if (addr && family == 2) {
			e->families[i] = 2;
			bpf_probe_read_user(e->addrs[i], 4, (void *)(addr + 4));
		} else if (addr && family == 10) {
			e->families[i] = 10;
			bpf_probe_read_user(e->addrs[i], 16, (void *)(addr + 8));
		}
		e->naddrs = i + 1;
		bpf_probe_read_user(&ai, sizeof(ai), (void *)(ai + AI_NEXT));
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* A send on a UDP socket between sys_enter and sys_exit, by thread. */
struct tw_send_call {
	__u64 sk; /* struct sock * */
	__u64 buf; /* the first payload bytes */
	__u64 len;
	__u16 dport;
	__u16 has_addr; /* the destination was given (unconnected socket) */
	__u16 pad[2];
	__u8 daddr[16]; /* when given */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct tw_send_call);
} sending SEC(".maps");

static __always_inline int is_dns_port(__u16 port)
{
	return port == 53 || port == 5353;
}

/* Remembers a send to a DNS port; `addr` is the destination given (may be
 * null on a connected socket). */
static __always_inline void remember_send(__u64 sk, __u64 buf, __u64 len, __u64 addr)
{
	struct tw_send_call call = {.sk = sk, .buf = buf, .len = len};
	__u16 family = 0;
	if (addr && bpf_probe_read_user(&family, 2, (void *)addr) == 0 &&
	    (family == 2 || family == 10)) {
		__u16 port_be = 0;
		/* sin_port and sin6_port are both at offset 2. */
		bpf_probe_read_user(&port_be, 2, (void *)(addr + 2));
		call.dport = __builtin_bswap16(port_be);
		call.has_addr = 1;
		if (family == 2)
			bpf_probe_read_user(call.daddr, 4, (void *)(addr + 4));
		else
			bpf_probe_read_user(call.daddr, 16, (void *)(addr + 8));
	} else {
		call.dport = __builtin_bswap16(BPF_CORE_READ((struct sock *)sk, __sk_common.skc_dport));
	}
	if (!is_dns_port(call.dport))
		return;
	__u64 id = bpf_get_current_pid_tgid();
	bpf_map_update_elem(&sending, &id, &call, BPF_ANY);
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int tw_sendto(struct trace_event_raw_sys_enter *ctx)
{
	__u64 sk = udp_sock(ctx->args[0]);
	if (sk)
		remember_send(sk, ctx->args[1], ctx->args[2], ctx->args[4]);
	return 0;
}

/* struct user_msghdr (LP64): msg_name at 0, msg_iov at 16; struct iovec:
 * iov_base at 0, iov_len at 8. */
static __always_inline void remember_msg(__u64 sk, __u64 msg)
{
	__u64 name = 0, iov = 0, base = 0, len = 0;
	bpf_probe_read_user(&name, 8, (void *)msg);
	bpf_probe_read_user(&iov, 8, (void *)(msg + 16));
	if (iov) {
		bpf_probe_read_user(&base, 8, (void *)iov);
		bpf_probe_read_user(&len, 8, (void *)(iov + 8));
	}
	remember_send(sk, base, len, name);
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int tw_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
	__u64 sk = udp_sock(ctx->args[0]);
	if (sk && ctx->args[1])
		remember_msg(sk, ctx->args[1]);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendmmsg")
int tw_sendmmsg(struct trace_event_raw_sys_enter *ctx)
{
	/* The first message: struct mmsghdr starts with its user_msghdr. */
	__u64 sk = udp_sock(ctx->args[0]);
	if (sk && ctx->args[1] && ctx->args[2] > 0)
		remember_msg(sk, ctx->args[1]);
	return 0;
}

static __always_inline int send_exit(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tw_send_call *found = bpf_map_lookup_elem(&sending, &id);
	if (!found)
		return 0;
	struct tw_send_call call = *found;
	bpf_map_delete_elem(&sending, &id);
	if (ret < 0)
		return 0;
	struct tw_dns_send_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_loss();
		return 0;
	}
	struct sock *sk = (struct sock *)call.sk;
	e->kind = TW_DNS_SEND;
	e->pid = id >> 32;
	e->ts_ns = bpf_ktime_get_ns();
	task_ids(&e->task);
	e->netns = netns_of(sk);
	e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->dport = call.dport;
	sock_addrs(sk, e->family, e->saddr, e->daddr);
	if (call.has_addr)
		__builtin_memcpy(e->daddr, call.daddr, 16);
	process_comm(e->comm);
	__u32 n = call.len > TW_DNS_PAYLOAD - 1 ? TW_DNS_PAYLOAD - 1 : call.len;
	n &= TW_DNS_PAYLOAD - 1;
	e->len = 0;
	if (call.buf && n > 0 && bpf_probe_read_user(e->payload, n, (void *)call.buf) == 0)
		e->len = n;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_sendto")
int tw_sendto_exit(struct trace_event_raw_sys_exit *ctx)
{
	return send_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_sendmsg")
int tw_sendmsg_exit(struct trace_event_raw_sys_exit *ctx)
{
	return send_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_sendmmsg")
int tw_sendmmsg_exit(struct trace_event_raw_sys_exit *ctx)
{
	return send_exit(ctx->ret);
}

char LICENSE[] SEC("license") = "GPL";

/* Network enforcement: cgroup programs attached to the cgroup v2 root (every
 * process of the node), deciding by the "enforced" and "net_rules" maps. */

static __always_inline struct tw_net_verdict *net_lookup(__u64 cg, __u8 direction, __u8 protocol,
							 __u16 port, __u8 family, const __u8 *addr)
{
	struct tw_net_key key = {};
	key.m.cgroup_lo = (__u32)cg;
	key.m.cgroup_hi = (__u32)(cg >> 32);
	key.m.direction = direction;
	key.m.protocol = protocol;
	key.m.family = family;
	key.prefixlen = 128 + (family == 4 ? 32 : 128);
	__builtin_memcpy(key.m.addr, addr, 16);
	key.m.port = port;
	struct tw_net_verdict *v = bpf_map_lookup_elem(&net_rules, &key);
	if (v)
		return v;
	key.m.port = 0;
	return bpf_map_lookup_elem(&net_rules, &key);
}

static __always_inline void blocked(__u64 cg, __u32 rule, __u8 direction, __u8 protocol, __u16 family,
				    const __u8 *saddr, __u16 sport, const __u8 *daddr, __u16 dport,
				    int in_task)
{
	struct tw_block_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_loss();
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = TW_NET_BLOCKED;
	e->ts_ns = bpf_ktime_get_ns();
	if (in_task) {
		e->pid = bpf_get_current_pid_tgid() >> 32;
		task_ids(&e->task);
		process_comm(e->comm);
	}
	e->task.cgroup_id = cg;
	e->rule = rule;
	e->family = family;
	e->protocol = protocol;
	e->direction = direction;
	e->sport = sport;
	e->dport = dport;
	__builtin_memcpy(e->saddr, saddr, 16);
	__builtin_memcpy(e->daddr, daddr, 16);
	bpf_ringbuf_submit(e, 0);
}

static __always_inline int egress_check(struct bpf_sock_addr *ctx, __u8 family)
{
	__u64 cg = bpf_get_current_cgroup_id();
	__u32 *flags = bpf_map_lookup_elem(&enforced, &cg);
	if (!flags || !(*flags & TW_ENFORCE_EGRESS))
		return 1;
	__u8 protocol = ctx->protocol;
	if (protocol != 6 && protocol != 17)
		return 1;
	__u8 addr[16] = {};
	if (family == 4) {
		__u32 ip = ctx->user_ip4;
		__builtin_memcpy(addr, &ip, 4);
	} else {
		__u32 ip6[4];
		ip6[0] = ctx->user_ip6[0];
		ip6[1] = ctx->user_ip6[1];
		ip6[2] = ctx->user_ip6[2];
		ip6[3] = ctx->user_ip6[3];
		__builtin_memcpy(addr, ip6, 16);
	}
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	struct tw_net_verdict *v = net_lookup(cg, TW_DIR_EGRESS, protocol, port, family, addr);
	if (!v || !v->deny)
		return 1;
	__u8 none[16] = {};
	blocked(cg, v->rule, TW_DIR_EGRESS, protocol, family == 4 ? 2 : 10, none, 0, addr, port, 1);
	return 0; /* EPERM to the caller */
}

SEC("cgroup/connect4")
int tw_enforce_connect4(struct bpf_sock_addr *ctx)
{
	return egress_check(ctx, 4);
}

SEC("cgroup/connect6")
int tw_enforce_connect6(struct bpf_sock_addr *ctx)
{
	return egress_check(ctx, 6);
}

SEC("cgroup/sendmsg4")
int tw_enforce_sendmsg4(struct bpf_sock_addr *ctx)
{
	return egress_check(ctx, 4);
}

SEC("cgroup/sendmsg6")
int tw_enforce_sendmsg6(struct bpf_sock_addr *ctx)
{
	return egress_check(ctx, 6);
}

/* Ingress: a new connection's first packet (TCP SYN without ACK, any UDP
 * datagram) to an enforced cgroup's socket, from a denied peer, is dropped. */
SEC("cgroup_skb/ingress")
int tw_enforce_ingress(struct __sk_buff *skb)
{
	__u64 cg = bpf_skb_cgroup_id(skb);
	__u32 *flags = bpf_map_lookup_elem(&enforced, &cg);
	if (!flags || !(*flags & TW_ENFORCE_INGRESS))
		return 1;
	__u8 family, protocol;
	__u8 saddr[16] = {}, daddr[16] = {};
	__u32 l4;
	if (skb->protocol == bpf_htons(0x0800)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) < 0)
			return 1;
		if (ip.frag_off & bpf_htons(0x1FFF))
			return 1; /* a later fragment: no ports */
		family = 4;
		protocol = ip.protocol;
		__builtin_memcpy(saddr, &ip.saddr, 4);
		__builtin_memcpy(daddr, &ip.daddr, 4);
		l4 = (ip.ihl & 0xF) * 4;
	} else if (skb->protocol == bpf_htons(0x86DD)) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)) < 0)
			return 1;
		family = 6;
		protocol = ip6.nexthdr; /* extension headers: not enforced */
		__builtin_memcpy(saddr, &ip6.saddr, 16);
		__builtin_memcpy(daddr, &ip6.daddr, 16);
		l4 = sizeof(ip6);
	} else {
		return 1;
	}
	__u16 ports[2];
	if (protocol == 6) {
		__u8 tcpflags;
		if (bpf_skb_load_bytes(skb, l4 + 13, &tcpflags, 1) < 0)
			return 1;
		if ((tcpflags & 0x12) != 0x02) /* not a SYN, or a SYN-ACK */
			return 1;
	} else if (protocol != 17) {
		return 1;
	}
	if (bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)) < 0)
		return 1;
	__u16 sport = bpf_ntohs(ports[0]), dport = bpf_ntohs(ports[1]);
	struct tw_net_verdict *v = net_lookup(cg, TW_DIR_INGRESS, protocol, dport, family, saddr);
	if (!v || !v->deny)
		return 1;
	blocked(cg, v->rule, TW_DIR_INGRESS, protocol, family == 4 ? 2 : 10, saddr, sport, daddr, dport, 0);
	return 0;
}
