// SPDX-License-Identifier: GPL-2.0
/* tapwire's tracepoint programs: TCP state changes and process exec/exit,
 * written to one ring buffer. A record that does not fit is counted in
 * "lost" (per CPU) and the agent reports it as a loss record. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
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

static __always_inline void count_loss(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&lost, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
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
	e->pad = 0;
	e->bytes_acked = 0;
	e->bytes_received = 0;
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
	}
	bpf_get_current_comm(e->comm, sizeof(e->comm));
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
	e->filename[0] = 0;
	e->args[0] = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
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

char LICENSE[] SEC("license") = "GPL";
