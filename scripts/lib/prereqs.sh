# shellcheck shell=bash
# Installs what building and testing weir needs, if missing: the PostgreSQL server and client
# tools (and wal2json, the CDC tests' reference), nats-server, OpenSSL headers and CLI, the reference zstd/lz4/gzip/bzip2/age/ssh-keygen tools, the
# s3s-fs test server, podman and debootstrap for the image, and Rust's rustfmt and clippy. Sourced by test.sh, demo.sh
# and bench.sh; idempotent, so a machine that has everything installs nothing.
weir_install_prereqs() {
    local need=()
    command -v pg_config >/dev/null 2>&1 || need+=(libpq-dev)
    # weir-basebackup links libpq (pq-sys finds it through pkg-config or pg_config).
    pkg-config --exists libpq 2>/dev/null || need+=(libpq-dev pkg-config)
    command -v pg_dump >/dev/null 2>&1 || need+=(postgresql-client)
    if ! command -v pg_config >/dev/null 2>&1 || [ ! -x "$(pg_config --bindir 2>/dev/null)/initdb" ]; then
        need+=(postgresql postgresql-contrib)
    fi
    command -v openssl >/dev/null 2>&1 || need+=(openssl)
    pkg-config --exists openssl 2>/dev/null || need+=(libssl-dev pkg-config)
    command -v runuser >/dev/null 2>&1 || need+=(util-linux)
    # The reference tools the interoperability tests and the benchmark run against.
    command -v zstd >/dev/null 2>&1 || need+=(zstd)
    command -v lz4 >/dev/null 2>&1 || need+=(lz4)
    command -v bzip2 >/dev/null 2>&1 || need+=(bzip2)
    command -v gzip >/dev/null 2>&1 || need+=(gzip)
    command -v age >/dev/null 2>&1 || need+=(age)
    command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
    command -v python3 >/dev/null 2>&1 || need+=(python3)
    # The restore-by-hand recipes (docs/restore-by-hand.md) and backup.sh's incrementals use jq;
    # the recipes check an archive's BLAKE3 digests with b3sum.
    command -v jq >/dev/null 2>&1 || need+=(jq)
    command -v b3sum >/dev/null 2>&1 || need+=(b3sum)
    # backup.sh's failure webhook; the scripts' lint.
    command -v curl >/dev/null 2>&1 || need+=(curl)
    command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
    # weir-sink's NATS JetStream target, tested against the real server.
    command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
    # Peak-RSS checks (the storage memory test, the benchmark).
    [ -x /usr/bin/time ] || need+=(time)
    # The Docker image, built and run by the test suite with podman (scripts/lib/image.sh).
    if [ -z "${WEIR_SKIP_IMAGE:-}" ]; then
        command -v podman >/dev/null 2>&1 || need+=(podman)
        command -v runc >/dev/null 2>&1 || need+=(runc)
        command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
    fi
    [ "${#need[@]}" -eq 0 ] || weir_apt_install "${need[@]}"
    # wal2json, for the server just found or installed: the CDC tests diff weir-cdc's lines
    # against its output (pg_recvlogical).
    if [ ! -e "$(pg_config --pkglibdir)/wal2json.so" ]; then
        weir_apt_install "postgresql-$(pg_config --version | awk '{ print int($2) }')-wal2json"
    fi
    # The S3-compatible server the storage tests run against (it checks SigV4 signatures).
    if ! command -v s3s-fs >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" ]; then
        echo "installing: s3s-fs 0.14.1 (cargo install)" >&2
        cargo install s3s-fs --version 0.14.1 --features binary --locked --quiet
    fi
    # Debian's postgresql package may leave a cluster of its own running; ours use other ports.
    if command -v rustup >/dev/null 2>&1; then
        rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
        rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
    fi
}

# weir_apt_install PACKAGE...: Debian's packages, through sudo unless we are root.
weir_apt_install() {
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "installing: $*" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# weir_require_space WHAT DIR GB [DIR GB]...: stops with one line when the file systems that
# hold these directories lack the space WHAT needs (the GBs of directories on one file system
# add up), instead of letting cargo, PostgreSQL or podman fail later in ways that look like
# anything but a full disk. A directory not made yet counts as its nearest existing parent.
weir_require_space() {
    local what=$1 dir gb mount free
    shift
    local -A gb_on=()
    while [ $# -ge 2 ]; do
        dir=$1 gb=$2
        shift 2
        while [ ! -e "$dir" ]; do dir=$(dirname "$dir"); done
        mount=$(df -P "$dir" | awk 'NR == 2 { print $6 }')
        gb_on[$mount]=$((${gb_on[$mount]:-0} + gb))
    done
    for mount in "${!gb_on[@]}"; do
        free=$(df -P -BG "$mount" | awk 'NR == 2 { sub(/G$/, "", $4); print $4 }')
        if [ "$free" -lt "${gb_on[$mount]}" ]; then
            echo "$what: needs about ${gb_on[$mount]} GB free on $mount and $free GB are: free space first (podman system prune -af removes every container image; leftovers of killed runs are under /tmp/weir-* and /var/tmp/weir-*)" >&2
            exit 1
        fi
    done
}
