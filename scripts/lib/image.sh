# shellcheck shell=bash
# Builds the Docker image from the Dockerfile, unchanged, with podman, on a machine that has no
# container registry within reach (as where weir is developed and tested): the two base
# images the Dockerfile names are made locally first, under the names it expects, so that
# `podman build --pull=never` needs no edits to its FROM lines.
#   debian:bookworm-slim  debootstrap --variant=minbase from the Debian mirror apt uses
#   rust:1-bookworm       that base, plus gcc and the Rust toolchain this machine already has
# Sourced by test.sh. weir_build_image TAG builds the image; it returns 0 when the image was
# built, 2 when this machine cannot build images (the reason is in $WEIR_IMAGE_SKIPPED), and 1
# when the build itself failed (a broken Dockerfile is a failure, never a skip).
# weir_image_cleanup TAG removes what the build and the tests left in container storage (issue
# 28: about 5.7 GB a run, the build stage alone 5.65 GB), keeping the two base images.

WEIR_IMAGE_WORK=${WEIR_IMAGE_WORK:-/var/tmp/weir-image}

# Podman 4.3 here: crun cannot run containers under cgroups v1 in hybrid mode ("cgroups in
# hybrid mode not supported"), so runc; and runc may not raise rlimits above what the
# sandbox grants (no CAP_SYS_RESOURCE), so the containers' defaults stay well below them.
weir_podman_conf() {
    mkdir -p "$WEIR_IMAGE_WORK"
    cat >"$WEIR_IMAGE_WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=8192:8192", "nproc=8192:8192"]
[engine]
runtime = "runc"
EOF
    export CONTAINERS_CONF=$WEIR_IMAGE_WORK/containers.conf
}

weir_image_skip() {
    export WEIR_IMAGE_SKIPPED=$1
    echo "image: cannot build here: $1" >&2
    return 2
}

# The mirror apt uses, from its deb822 or one-line sources.
weir_debian_mirror() {
    local m
    m=$(grep -hoE '^URIs: *https?://[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1 | sed 's/^URIs: *//')
    [ -n "$m" ] || m=$(grep -hoE '^deb +https?://[^ ]+' /etc/apt/sources.list 2>/dev/null | head -n1 | sed 's/^deb *//')
    echo "${m:-http://deb.debian.org/debian}"
}

weir_base_image() {
    podman image exists docker.io/library/debian:bookworm-slim && return 0
    local root=$WEIR_IMAGE_WORK/rootfs
    rm -rf "$root"
    echo "image: debootstrap bookworm from $(weir_debian_mirror)" >&2
    debootstrap --variant=minbase bookworm "$root" "$(weir_debian_mirror)" >"$WEIR_IMAGE_WORK/debootstrap.log" 2>&1 ||
        { tail -n 5 "$WEIR_IMAGE_WORK/debootstrap.log" >&2; weir_image_skip "debootstrap failed"; return; }
    # Where HTTPS goes through an inspecting proxy, its CA must be trusted inside too.
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        mkdir -p "$root/usr/local/share/ca-certificates"
        cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    fi
    tar -C "$root" -c . | podman import - docker.io/library/debian:bookworm-slim >/dev/null ||
        { weir_image_skip "podman import failed"; return; }
    rm -rf "$root"
}

weir_rust_image() {
    podman image exists docker.io/library/rust:1-bookworm && return 0
    local sysroot ctx=$WEIR_IMAGE_WORK/rust
    sysroot=$(rustc --print sysroot) || { weir_image_skip "no Rust toolchain to copy"; return; }
    rm -rf "$ctx" && mkdir -p "$ctx/rust"
    # The toolchain without its documentation (share/ is 800 MB of HTML).
    cp -a "$sysroot/bin" "$sysroot/lib" "$ctx/rust/"
    [ -d "$sysroot/libexec" ] && cp -a "$sysroot/libexec" "$ctx/rust/"
    cat >"$ctx/Containerfile" <<'EOF'
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        ca-certificates gcc libc6-dev make binutils git \
    && update-ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*
COPY rust /usr/local/rust
ENV PATH=/usr/local/rust/bin:/usr/local/cargo/bin:$PATH CARGO_HOME=/usr/local/cargo
EOF
    podman build -q --pull=never --network=host -t docker.io/library/rust:1-bookworm "$ctx" >/dev/null ||
        { weir_image_skip "the rust:1-bookworm stand-in did not build"; return; }
    rm -rf "$ctx"
}

# weir_build_image TAG: the project's image, from the Dockerfile as it is.
weir_build_image() {
    local tag=$1
    export WEIR_IMAGE_SKIPPED=
    command -v podman >/dev/null 2>&1 || { weir_image_skip "podman is not installed"; return; }
    command -v debootstrap >/dev/null 2>&1 || { weir_image_skip "debootstrap is not installed"; return; }
    weir_podman_conf
    weir_base_image || return
    podman run --rm --network=host docker.io/library/debian:bookworm-slim true >/dev/null 2>&1 ||
        { weir_image_skip "podman cannot run a container here"; return; }
    weir_rust_image || return
    echo "image: podman build -t $tag (a release build inside; about 15 minutes on 2 cores)" >&2
    # Bookworm has only PostgreSQL 15's client tools; the PGDG repository is out of reach here.
    # --force-rm: a failed step's container goes too, not only a finished one's.
    podman build --pull=never --network=host --force-rm --build-arg PG_SOURCE=debian --build-arg PG_MAJOR=15 \
        -t "$tag" . >"$WEIR_IMAGE_WORK/build.log" 2>&1 ||
        { tail -n 30 "$WEIR_IMAGE_WORK/build.log" >&2; echo "image: podman build failed" >&2; return 1; }
}

# weir_image_cleanup TAG: the containers and the image of TAG, then every untagged image: the
# build stage (its release target/, about 5.6 GB), the per-step layers of each build, and the
# earlier images that TAG named before a rebuild. `podman image prune` takes dangling images
# (untagged, nothing built on them) and repeats until none is left, so a chain of untagged
# layers goes down to the first tagged image below it: the two base images stay, with the
# layers they are made of, and the next build does not repeat debootstrap.
weir_image_cleanup() {
    local tag=$1
    command -v podman >/dev/null 2>&1 || return 0
    weir_podman_conf
    podman ps -aq --filter "ancestor=$tag" | xargs -r podman rm -f >/dev/null 2>&1 || true
    # An interrupted build leaves buildah's working containers, and its stage images under
    # temporary names (`<64 hex digits>-tmp`), which are tagged and so never dangling.
    podman ps -a --external --format '{{.ID}} {{.Names}}' | awk '$2 ~ /-working-container$/ { print $1 }' |
        xargs -r podman rm -f >/dev/null 2>&1 || true
    podman images --format '{{.Repository}}:{{.Tag}}' | grep -E '/[0-9a-f]{64}-tmp:' |
        xargs -r podman rmi -f >/dev/null 2>&1 || true
    podman image exists "$tag" && { podman rmi "$tag" >/dev/null || true; }
    podman image prune -f >/dev/null || true
    rm -rf "${WEIR_IMAGE_WORK:?}/rootfs" "$WEIR_IMAGE_WORK/rust"
}
