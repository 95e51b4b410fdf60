#!/usr/bin/env bash
# Installs what the tests need, starts the real services, and runs every check:
# formatting, that the default build needs no system library, clippy (warnings
# are errors), all tests (with live capture, feature live-capture), and the docs.
#
# Usage: scripts/test.sh            (from any directory; root on Debian 12, as CI runs it)
#
# - The test bed (Tansu, ClickHouse, SeaweedFS, syslog-ng, tshark) comes from
#   scripts/services.sh; Tansu is compiled once (about 16 min) and reused after.
# - Builds go to $CARGO_TARGET_DIR (default ~/.cache/tapwire-target), outside
#   the clone, so a second run is incremental.
# - With CI=true, a test whose service is missing fails instead of skipping.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing the test bed (only what is missing)"
scripts/services.sh install

step "starting services"
scripts/services.sh start
eval "$(scripts/services.sh env)"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tapwire-target}
# No rustc incremental caches: a cached target directory stays incremental
# by crate (dependencies are built once), without gigabytes of per-build
# session data piling up across runs.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step "cargo fmt --check"
cargo fmt --all -- --check

# Live packet capture links libpcap (feature live-capture); the tests use it.
FEATURES=tapwire/live-capture

step "the default build needs no system library: no libpcap in its dependency graph"
if cargo tree -p tapwire -e normal --locked | grep -E ' pcap v[0-9]'; then
    echo "the default build of tapwire depends on the pcap crate (libpcap)" >&2
    exit 1
fi

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked --features "$FEATURES" -- -D warnings
cargo clippy -p tapwire-capture --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked --features "$FEATURES"

step "cargo test: OTLP trace export (feature otlp)"
cargo test -p tapwire --features otlp,live-capture --test otlp --locked

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --features "$FEATURES"

step "all checks passed"
