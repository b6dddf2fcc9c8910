#!/usr/bin/env bash
# Runs the whole test suite: installs missing prerequisites, then formatting, lints (Rust and
# the shell scripts), the Docker image (built with podman where the machine can; see
# scripts/lib/image.sh), unit tests (with the man-page and completion drift checks) and
# integration tests (which start their own PostgreSQL cluster and run the image).
# WEIR_SKIP_IMAGE=1 leaves the image out; its test then says it was skipped.
# It leaves container storage as it found it, but for the two base images (issue 28): what the
# build made is removed when the suite ends, passed or failed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/prereqs.sh
# Measured on 2 cores (df before and during a run on a clean clone, 2026-12-04): the debug
# build and its test binaries about 3 GB, the test clusters and repositories under $TMPDIR
# about 2 GB at their peak; the image build about 20 GB more at its peak (the build stage's
# layers and release target/), about 5 GB of it until the suite ends, nothing after.
if [ -n "${WEIR_SKIP_IMAGE:-}" ]; then
    weir_require_space "scripts/test.sh" . 4 "${TMPDIR:-/tmp}" 2
else
    weir_require_space "scripts/test.sh" . 4 "${TMPDIR:-/tmp}" 2 /var/lib/containers 20
fi
weir_install_prereqs
cargo fmt --all -- --check
shellcheck -x scripts/*.sh scripts/lib/*.sh
cargo clippy --all-targets -- -D warnings
if [ -n "${WEIR_SKIP_IMAGE:-}" ]; then
    export WEIR_TEST_IMAGE_SKIPPED="WEIR_SKIP_IMAGE is set"
else
    . scripts/lib/image.sh
    # What an earlier run left (one killed before its cleanup), then ours when this one ends.
    weir_image_cleanup localhost/weir:test
    trap 'weir_image_cleanup localhost/weir:test' EXIT
    status=0
    weir_build_image localhost/weir:test || status=$?
    case $status in
        0) export WEIR_TEST_IMAGE=localhost/weir:test ;;
        2) ;; # this machine cannot build images: WEIR_TEST_IMAGE_SKIPPED says why
        *) exit 1 ;;
    esac
fi
cargo test --all-targets
