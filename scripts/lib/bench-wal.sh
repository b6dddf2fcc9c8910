# shellcheck shell=bash
# The WAL pair of scripts/bench.sh: weir-wal against pgBackRest 2.45 (Debian's pgbackrest),
# both to a posix repository, zstd level 3, encrypted (pgBackRest aes-256-cbc with a cipher
# pass in its configuration file, weir to an age recipient), on the same real segments of the
# benchmark's cluster. The archiver is played by a loop that calls the command once per
# segment, in order, and marks the segment .done in archive_status after a success, as
# PostgreSQL's archiver does (pgarch.c); restore_command by a loop that asks for each segment
# in turn. Sourced by bench.sh after its cluster, measure(), best(), maxi(), $bin, $work and
# $runs exist.
# shellcheck disable=SC2154 # work, runs, bin and SCRATCH_* come from bench.sh.

# The segments: WAL from a bulk load, kept from recycling by wal_keep_size, copied once into
# a pg_wal directory of our own with an archive_status, as the archiver would see it.
bench_wal_segments() {
    local n=$1 start stop
    psql -X -q -d postgres -c "ALTER SYSTEM SET wal_keep_size = '8GB'" -c "SELECT pg_reload_conf()" >/dev/null
    start=$(psql -X -A -t -d postgres -c "SELECT pg_walfile_name(pg_current_wal_lsn())")
    psql -X -q -d postgres -c "CREATE DATABASE walbench"
    # About one segment per 150,000 rows of this shape.
    psql -X -q -d walbench -c "CREATE TABLE w AS SELECT g, md5(g::text) AS h, now() AS t FROM generate_series(1, $((n * 155000))) g"
    stop=$(psql -X -A -t -d postgres -c "SELECT pg_walfile_name(pg_switch_wal())")
    mkdir -p "$work/wal/pg_wal/archive_status"
    psql -X -A -t -d postgres -c "SELECT name FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$' AND name >= '$start' AND name <= '$stop' ORDER BY name LIMIT $n" \
        > "$work/wal/names"
    while read -r f; do cp "$SCRATCH_DIR/data/pg_wal/$f" "$work/wal/pg_wal/$f"; done < "$work/wal/names"
    # pgBackRest finds archive_status beside the file and the cluster's identity in pg1-path:
    # this copy is a data directory as far as archiving goes.
    mkdir -p "$work/wal/global"
    cp "$SCRATCH_DIR/data/global/pg_control" "$work/wal/global/"
    cp "$SCRATCH_DIR/data/PG_VERSION" "$work/wal/"
    psql -X -q -d postgres -c "DROP DATABASE walbench" -c "ALTER SYSTEM RESET wal_keep_size" -c "SELECT pg_reload_conf()" >/dev/null
    chown -R postgres "$work/wal" 2>/dev/null || true
    wc -l < "$work/wal/names"
}

# pgBackRest's configuration: one stanza for the benchmark's cluster (created from the real
# data directory, archived from the copy); sync, or async with two processes. Everything it
# needs runs as the cluster's owner.
bench_wal_pgbackrest_conf() {
    local async=$1 pgdata=$2 conf=$work/pgbackrest-$1.conf
    {
        echo "[global]"
        echo "repo1-path=$work/pgbr-repo"
        echo "repo1-cipher-type=aes-256-cbc"
        echo "repo1-cipher-pass=$(openssl rand -hex 24)"
        echo "compress-type=zst"
        echo "compress-level=3"
        echo "lock-path=$work/pgbr-lock"
        echo "spool-path=$work/pgbr-spool"
        echo "log-level-console=warn"
        echo "log-level-file=off"
        if [ "$async" = async ]; then
            echo "archive-async=y"
            echo "process-max=2"
            echo "archive-get-queue-max=256MiB"
        fi
        echo "[bench]"
        echo "pg1-path=$pgdata"
        echo "pg1-socket-path=$SCRATCH_DIR"
        echo "pg1-port=$SCRATCH_PORT"
        echo "pg1-user=postgres"
    } > "$conf"
    chown postgres "$conf" 2>/dev/null || true
    echo "$conf"
}

# The archiver's loop over the copied segments: COMMAND %p, then .ready becomes .done.
bench_wal_archive_loop() {
    cat > "$work/wal/archive-loop.sh" <<'EOF'
set -eu
dir=$1; shift
for f in $(cat "$dir/names"); do : > "$dir/pg_wal/archive_status/$f.ready"; done
for f in $(cat "$dir/names"); do
    "$@" "$dir/pg_wal/$f"
    mv "$dir/pg_wal/archive_status/$f.ready" "$dir/pg_wal/archive_status/$f.done"
done
EOF
    cat > "$work/wal/restore-loop.sh" <<'EOF'
set -eu
dir=$1; shift
for f in $(cat "$dir/names"); do
    "$@" "$f" "$dir/restored/RECOVERYXLOG"
    cmp -s "$dir/restored/RECOVERYXLOG" "$dir/pg_wal/$f"
    rm "$dir/restored/RECOVERYXLOG"
done
EOF
    # pgBackRest with the durability weir-wal fetch gives by default: %p synced after it is
    # written (pgBackRest's archive-get writes it unsynced, src/command/archive/get/file.c).
    cat > "$work/wal/get-synced.sh" <<'EOF2'
set -eu
"$@"
for p in "$@"; do :; done
sync "$p"
EOF2
    mkdir -p "$work/wal/restored"
    chown -R postgres "$work/wal" 2>/dev/null || true
}

# Waits for what a measured command left running in the background (pgBackRest's async
# processes, weir's prefetcher) before the next measurement starts, so none is charged for
# another's work; stops it after ten seconds.
bench_wal_quiesce() {
    for _ in $(seq 100); do
        pgrep -u postgres -f 'pgbackrest|weir-wal' >/dev/null || return 0
        sleep 0.1
    done
    pkill -u postgres -f 'pgbackrest|weir-wal' || true
    sleep 0.5
}

# Empties a repository so the next push run starts from nothing.
bench_wal_reset() {
    rm -rf "$work/weir-wal-repo" "$work/weir-wal-spool" "$work/pgbr-spool" "$work/wal/pg_wal/archive_status"/*
    mkdir -p "$work/weir-wal-repo" "$work/weir-wal-spool"
    if [ -d "$work/pgbr-repo" ]; then rm -rf "$work/pgbr-repo"; fi
    mkdir -p "$work/pgbr-repo" "$work/pgbr-lock" "$work/pgbr-spool"
    chown -R postgres "$work/weir-wal-repo" "$work/weir-wal-spool" "$work/pgbr-repo" "$work/pgbr-lock" "$work/pgbr-spool" 2>/dev/null || true
    runuser -u postgres -- pgbackrest --config="$work/pgbackrest-create.conf" --stanza=bench stanza-create >/dev/null
}

bench_wal() {
    local n
    echo "== WAL: weir-wal and pgBackRest $(pgbackrest version | cut -d' ' -f2), posix repository, zstd 3, encrypted, $runs runs each"
    n=$(bench_wal_segments "${BENCH_WAL_SEGMENTS:-100}")
    local sync async create
    create=$(bench_wal_pgbackrest_conf create "$SCRATCH_DIR/data")
    sync=$(bench_wal_pgbackrest_conf sync "$work/wal")
    async=$(bench_wal_pgbackrest_conf async "$work/wal")
    # One cipher pass for every configuration, so each reads what the others wrote.
    sed -i "s/^repo1-cipher-pass=.*/$(grep '^repo1-cipher-pass=' "$create")/" "$sync" "$async"
    bench_wal_archive_loop
    age-keygen -o "$work/wal-key.txt" 2>/dev/null
    chown postgres "$work/wal-key.txt" 2>/dev/null || true
    local rcpt ww=("$bin/weir-wal") as=(runuser -u postgres --)
    rcpt=$(age-keygen -y "$work/wal-key.txt")
    local pw=() pp=() ps=() pa=() fw=() fp=() fl=() fs=() fa=() fn=() pwk=() ppk=()
    for _ in $(seq "$runs"); do
        bench_wal_reset
        read -r a b < <(measure "weir-wal push x$n" "${as[@]}" bash "$work/wal/archive-loop.sh" "$work/wal" "${ww[@]}" push --repo "$work/weir-wal-repo" -r "$rcpt")
        bench_wal_quiesce
        read -r c d < <(measure "pgbackrest archive-push x$n" "${as[@]}" bash "$work/wal/archive-loop.sh" "$work/wal" pgbackrest --config="$sync" --stanza=bench archive-push)
        bench_wal_quiesce
        read -r e _ < <(measure "weir-wal fetch x$n" "${as[@]}" bash "$work/wal/restore-loop.sh" "$work/wal" "${ww[@]}" fetch --repo "$work/weir-wal-repo" -i "$work/wal-key.txt")
        bench_wal_quiesce
        read -r f _ < <(measure "pgbackrest archive-get x$n" "${as[@]}" bash "$work/wal/restore-loop.sh" "$work/wal" pgbackrest --config="$sync" --stanza=bench archive-get)
        bench_wal_quiesce
        read -r l _ < <(measure "pgbackrest archive-get, sync %p" "${as[@]}" bash "$work/wal/restore-loop.sh" "$work/wal" bash "$work/wal/get-synced.sh" pgbackrest --config="$sync" --stanza=bench archive-get)
        bench_wal_quiesce
        read -r m _ < <(measure "weir-wal fetch --no-sync x$n" "${as[@]}" bash "$work/wal/restore-loop.sh" "$work/wal" "${ww[@]}" fetch --repo "$work/weir-wal-repo" -i "$work/wal-key.txt" --no-sync)
        bench_wal_quiesce
        read -r g _ < <(measure "weir-wal fetch --prefetch 4" "${as[@]}" bash "$work/wal/restore-loop.sh" "$work/wal" "${ww[@]}" fetch --repo "$work/weir-wal-repo" -i "$work/wal-key.txt" --prefetch 4 --spool "$work/weir-wal-spool")
        bench_wal_quiesce
        read -r h _ < <(measure "pgbackrest archive-get async" "${as[@]}" bash "$work/wal/restore-loop.sh" "$work/wal" pgbackrest --config="$async" --stanza=bench archive-get)
        bench_wal_quiesce
        bench_wal_reset
        read -r j _ < <(measure "weir-wal push --parallel 2" "${as[@]}" bash "$work/wal/archive-loop.sh" "$work/wal" "${ww[@]}" push --repo "$work/weir-wal-repo" -r "$rcpt" --parallel 2 --spool "$work/weir-wal-spool")
        bench_wal_quiesce
        read -r k _ < <(measure "pgbackrest archive-push async" "${as[@]}" bash "$work/wal/archive-loop.sh" "$work/wal" pgbackrest --config="$async" --stanza=bench archive-push)
        bench_wal_quiesce
        pw+=("$a"); pwk+=("$b"); pp+=("$c"); ppk+=("$d"); fw+=("$e"); fn+=("$m"); fp+=("$f"); fl+=("$l"); fa+=("$g"); fs+=("$h"); ps+=("$j"); pa+=("$k")
    done
    local sizes
    sizes="weir $(du -sb "$work/weir-wal-repo" | cut -f1) bytes, pgBackRest $(du -sb "$work/pgbr-repo/archive" | cut -f1) bytes"
    rate() { python3 -c "print(f'{$n/$1:.1f}')"; }
    ratio() { python3 -c "print(f'{$2/$1:.2f}')"; }
    {
        printf '  %-26s weir %s seg/s, pgBackRest %s seg/s: %sx (target >= 1.5); peak RSS %d MiB vs %d MiB\n' "WAL push, one call each" \
            "$(rate "$(best "${pw[@]}")")" "$(rate "$(best "${pp[@]}")")" "$(ratio "$(best "${pw[@]}")" "$(best "${pp[@]}")")" \
            "$(($(maxi "${pwk[@]}") / 1024))" "$(($(maxi "${ppk[@]}") / 1024))"
        printf '  %-26s weir %s seg/s, pgBackRest async %s seg/s: %sx (target >= 1.0)\n' "WAL push --parallel 2" \
            "$(rate "$(best "${ps[@]}")")" "$(rate "$(best "${pa[@]}")")" "$(ratio "$(best "${ps[@]}")" "$(best "${pa[@]}")")"
        printf '  %-26s weir %s seg/s, pgBackRest %s seg/s: %sx (target >= 1.0)\n' "WAL fetch, one call each" \
            "$(rate "$(best "${fw[@]}")")" "$(rate "$(best "${fp[@]}")")" "$(ratio "$(best "${fw[@]}")" "$(best "${fp[@]}")")"
        printf '  %-26s weir %s seg/s, pgBackRest then sync %%p %s seg/s: %sx (the same durability)\n' "WAL fetch, synced both" \
            "$(rate "$(best "${fw[@]}")")" "$(rate "$(best "${fl[@]}")")" "$(ratio "$(best "${fw[@]}")" "$(best "${fl[@]}")")"
        printf '  %-26s weir %s seg/s, pgBackRest (which does not sync %%p either) %s seg/s: %sx\n' "WAL fetch --no-sync" \
            "$(rate "$(best "${fn[@]}")")" "$(rate "$(best "${fp[@]}")")" "$(ratio "$(best "${fn[@]}")" "$(best "${fp[@]}")")"
        printf '  %-26s weir %s seg/s, pgBackRest async %s seg/s: %sx (target >= 1.0)\n' "WAL fetch --prefetch 4" \
            "$(rate "$(best "${fa[@]}")")" "$(rate "$(best "${fs[@]}")")" "$(ratio "$(best "${fa[@]}")" "$(best "${fs[@]}")")"
        echo "  (WAL: $n segments of 16 MiB; stored: $sizes)"
    } >> "$work/stages"
}

# The same segments to S3: weir-wal straight to the benchmark's s3s-fs ($s3port, the AWS_*
# variables bench.sh exports), pgBackRest through stunnel4, since its 2.45 S3 client speaks
# TLS only (a throwaway certificate, verification off). One call per segment each way; the
# TLS hop is pgBackRest's cost, and the table says so.
bench_wal_s3() {
    local tls cert=$work/stunnel.pem conf=$work/pgbackrest-s3.conf run
    command -v stunnel4 >/dev/null 2>&1 || { apt-get install -y -qq --no-install-recommends stunnel4 >/dev/null; }
    tls=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -keyout "$cert" -out "$cert" 2>/dev/null
    printf 'foreground = no\npid = %s\n[s3]\naccept = 127.0.0.1:%s\nconnect = 127.0.0.1:%s\ncert = %s\n' \
        "$work/stunnel.pid" "$tls" "$s3port" "$cert" > "$work/stunnel.conf"
    stunnel4 "$work/stunnel.conf"
    {
        grep -v '^repo1-path=' "$work/pgbackrest-sync.conf" | sed '/^\[bench\]/,$d'
        echo "repo1-type=s3"
        echo "repo1-path=/pgbr-RUN"
        echo "repo1-s3-bucket=bench"
        echo "repo1-s3-endpoint=127.0.0.1"
        echo "repo1-storage-port=$tls"
        echo "repo1-storage-verify-tls=n"
        echo "repo1-s3-region=us-east-1"
        echo "repo1-s3-uri-style=path"
        echo "repo1-s3-key=$AWS_ACCESS_KEY_ID"
        echo "repo1-s3-key-secret=$AWS_SECRET_ACCESS_KEY"
        sed -n '/^\[bench\]/,$p' "$work/pgbackrest-sync.conf"
    } > "$conf"
    local ww=("$bin/weir-wal") as=(runuser -u postgres --) aws_env
    aws_env=(env AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"
        AWS_REGION=us-east-1 AWS_ENDPOINT_URL="$AWS_ENDPOINT_URL" AWS_EC2_METADATA_DISABLED=true)
    local rcpt sp=() ss=() fp=() fs=() n
    rcpt=$(age-keygen -y "$work/wal-key.txt")
    n=$(wc -l < "$work/wal/names")
    for run in $(seq "$runs"); do
        # A repository per run: pgBackRest would skip segments it holds already.
        sed "s|RUN|$run|" "$work/pgbackrest-s3.conf" > "$work/pgbackrest-s3-$run.conf"
        conf=$work/pgbackrest-s3-$run.conf
        sed "s|^pg1-path=.*|pg1-path=$SCRATCH_DIR/data|" "$conf" > "$conf.create"
        chown postgres "$conf" "$conf.create" 2>/dev/null || true
        runuser -u postgres -- pgbackrest --config="$conf.create" --stanza=bench stanza-create >/dev/null
        rm -f "$work/wal/pg_wal/archive_status"/*
        read -r a _ < <(measure "weir-wal push to S3" "${as[@]}" "${aws_env[@]}" bash "$work/wal/archive-loop.sh" "$work/wal" "${ww[@]}" push --repo "s3://bench/weir-wal-$run" -r "$rcpt")
        bench_wal_quiesce
        read -r b _ < <(measure "pgbackrest archive-push to S3" "${as[@]}" bash "$work/wal/archive-loop.sh" "$work/wal" pgbackrest --config="$conf" --stanza=bench archive-push)
        bench_wal_quiesce
        read -r c _ < <(measure "weir-wal fetch from S3" "${as[@]}" "${aws_env[@]}" bash "$work/wal/restore-loop.sh" "$work/wal" "${ww[@]}" fetch --repo "s3://bench/weir-wal-$run" -i "$work/wal-key.txt")
        bench_wal_quiesce
        read -r d _ < <(measure "pgbackrest archive-get from S3" "${as[@]}" bash "$work/wal/restore-loop.sh" "$work/wal" pgbackrest --config="$conf" --stanza=bench archive-get)
        bench_wal_quiesce
        sp+=("$a"); ss+=("$b"); fp+=("$c"); fs+=("$d")
    done
    kill "$(cat "$work/stunnel.pid")" 2>/dev/null || true
    rate() { python3 -c "print(f'{$n/$1:.1f}')"; }
    ratio() { python3 -c "print(f'{$2/$1:.2f}')"; }
    {
        printf '  %-26s weir %s seg/s, pgBackRest (through stunnel) %s seg/s: %sx\n' "WAL push to S3" \
            "$(rate "$(best "${sp[@]}")")" "$(rate "$(best "${ss[@]}")")" "$(ratio "$(best "${sp[@]}")" "$(best "${ss[@]}")")"
        printf '  %-26s weir %s seg/s, pgBackRest (through stunnel) %s seg/s: %sx\n' "WAL fetch from S3" \
            "$(rate "$(best "${fp[@]}")")" "$(rate "$(best "${fs[@]}")")" "$(ratio "$(best "${fp[@]}")" "$(best "${fs[@]}")")"
    } >> "$work/stages"
}
