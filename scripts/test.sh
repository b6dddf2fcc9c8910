#!/usr/bin/env bash
# Runs the whole test suite: installs missing prerequisites, then formatting, lints (Rust and
# the shell scripts), unit and integration tests (which start their own PostgreSQL cluster)
# and the man-page drift check.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/prereqs.sh
weir_install_prereqs
cargo fmt --all -- --check
shellcheck -x scripts/*.sh scripts/lib/*.sh
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
