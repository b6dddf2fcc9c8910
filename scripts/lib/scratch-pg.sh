# shellcheck shell=bash
# A throwaway PostgreSQL cluster in a temporary directory, for the demo and the benchmark.
# initdb refuses to run as root, so as root the server runs as the `postgres` user.
# After scratch_pg_start, PGHOST/PGPORT/PGUSER point at it; scratch_pg_stop removes it.
scratch_pg_start() {
    local bindir
    bindir=$(pg_config --bindir)
    SCRATCH_DIR=$(mktemp -d "${TMPDIR:-/tmp}/weir-pg.XXXXXX")
    chmod 755 "$SCRATCH_DIR"
    local as=()
    if [ "$(id -u)" = 0 ]; then
        chown postgres "$SCRATCH_DIR"
        as=(runuser -u postgres --)
    fi
    SCRATCH_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "${as[@]}" "$bindir/initdb" -D "$SCRATCH_DIR/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
    "${as[@]}" "$bindir/pg_ctl" -D "$SCRATCH_DIR/data" -l "$SCRATCH_DIR/log" -w \
        -o "-p $SCRATCH_PORT -k $SCRATCH_DIR -c listen_addresses='' ${SCRATCH_PG_OPTS:-}" start >/dev/null
    export PGHOST="$SCRATCH_DIR" PGPORT="$SCRATCH_PORT" PGUSER=postgres
    unset PGDATABASE PGPASSWORD PGSERVICE
    SCRATCH_AS=("${as[@]}")
    SCRATCH_BINDIR=$bindir
}

scratch_pg_stop() {
    [ -n "${SCRATCH_DIR:-}" ] || return 0
    "${SCRATCH_AS[@]}" "$SCRATCH_BINDIR/pg_ctl" -D "$SCRATCH_DIR/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$SCRATCH_DIR"
    SCRATCH_DIR=
}

# Restarts the scratch server with the options it was started with (pg_ctl keeps them in
# postmaster.opts), for settings that need a restart.
scratch_pg_restart() {
    "${SCRATCH_AS[@]}" "$SCRATCH_BINDIR/pg_ctl" -D "$SCRATCH_DIR/data" -l "$SCRATCH_DIR/log" -w -m fast restart >/dev/null
}
