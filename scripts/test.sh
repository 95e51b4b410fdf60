#!/usr/bin/env bash
# Installs what the tests need, starts the real services, and runs every check:
# formatting, clippy (warnings are errors), all tests, and the docs.
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
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "cargo test: OTLP trace export (feature otlp)"
cargo test -p tapwire --features otlp --test otlp --locked

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "all checks passed"
