#!/usr/bin/env bash
# Runs the whole test suite: installs missing prerequisites, then formatting, lints (Rust and
# the shell scripts), the Docker image (built with podman where the machine can; see
# scripts/lib/image.sh), unit tests (with the man-page and completion drift checks) and
# integration tests (which start their own PostgreSQL cluster and run the image).
# WEIR_SKIP_IMAGE=1 leaves the image out; its test then says it was skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/prereqs.sh
weir_install_prereqs
cargo fmt --all -- --check
shellcheck -x scripts/*.sh scripts/lib/*.sh
cargo clippy --all-targets -- -D warnings
if [ -n "${WEIR_SKIP_IMAGE:-}" ]; then
    export WEIR_TEST_IMAGE_SKIPPED="WEIR_SKIP_IMAGE is set"
else
    . scripts/lib/image.sh
    status=0
    weir_build_image localhost/weir:test || status=$?
    case $status in
        0) export WEIR_TEST_IMAGE=localhost/weir:test ;;
        2) ;; # this machine cannot build images: WEIR_TEST_IMAGE_SKIPPED says why
        *) exit 1 ;;
    esac
fi
cargo test --all-targets
