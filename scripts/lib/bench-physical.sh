# shellcheck shell=bash
# The physical pair of scripts/bench.sh: a full base backup of the benchmark's cluster and a
# restore plus recovery to a time target, weir against pgBackRest 2.45 (Debian's pgbackrest),
# both to a posix repository (a directory), zstd level 3, encrypted (pgBackRest aes-256-cbc,
# weir to an age recipient), pgBackRest with process-max=2, both with a fast checkpoint; and,
# for scale, plain pg_basebackup -Ft -z (gzip) and pg_basebackup -Ft | zstd -T2. The server
# archives every segment to both repositories (weir-wal push, then pgbackrest archive-push),
# so each tool finds the WAL its backup waits for and its recovery replays.
# Sourced by bench.sh after its cluster, best(), maxi(), $bin, $work and $runs exist.
# shellcheck disable=SC2154 # work, runs, bin and SCRATCH_* come from bench.sh.

# phys_measure LABEL COMMAND...: runs COMMAND as the cluster's owner; prints "seconds KiB
# client-CPU server-CPU". Client CPU is what /usr/bin/time counts for COMMAND and its
# children; server CPU is what the backends that ended meanwhile used (the postmaster's
# children's time, /proc/PID/stat fields 16 and 17): weir's walsender reads the files that
# pgBackRest reads itself, so only the sum compares. Memory is reported twice: the largest
# process's peak RSS (/usr/bin/time) and the peak of the whole process tree's RSS summed (a
# pipeline of four stages against pgBackRest's main and local processes), sampled every 50 ms;
# the tree's sum goes to $work/tree.
#
# With PHYS_COLD set, the page cache is emptied first (as root): how fast a restore writes
# depends on how much memory the kernel must first reclaim from whatever ran before, so in
# one 5 GB run the first restore (weir --from) took 12.8 s to write the files and the pipe
# form right after it 7.5 s; emptied before each, the two take 5.3-6.5 s alike.
phys_measure() {
    local label=$1; shift
    psql -X -q -d postgres -c CHECKPOINT
    sync
    if [ -n "${PHYS_COLD:-}" ] && [ -w /proc/sys/vm/drop_caches ]; then
        echo 3 > /proc/sys/vm/drop_caches
    fi
    local pm before after secs kb usr sys tick
    pm=$(head -n1 "$SCRATCH_DIR/data/postmaster.pid")
    tick=$(getconf CLK_TCK)
    before=$(awk '{ print $16 + $17 }' "/proc/$pm/stat")
    setsid /usr/bin/time -f "%e %M %U %S" -o "$work/time" runuser -u postgres -- "$@" >/dev/null 2>"$work/err" &
    local job=$! peak=0 sum
    while kill -0 "$job" 2>/dev/null; do
        # The session's processes but the measuring ones (time, runuser), in KiB.
        # (ps fails once the session has ended, between the test and here.)
        sum=$({ ps -o rss=,comm= -s "$job" 2>/dev/null || true; } | awk '$2 != "time" && $2 != "runuser" { s += $1 } END { print s + 0 }')
        [ "$sum" -le "$peak" ] || peak=$sum
        sleep 0.05
    done
    wait "$job" || { cat "$work/err" >&2; exit 1; }
    echo "$peak" > "$work/tree"
    after=$(awk '{ print $16 + $17 }' "/proc/$pm/stat")
    read -r secs kb usr sys < "$work/time"
    local cpu server
    cpu=$(python3 -c "print(f'{$usr + $sys:.2f}')")
    server=$(python3 -c "print(f'{($after - $before) / $tick:.2f}')")
    printf '%-30s %7.2f s wall %8d KiB peak RSS (%d KiB all processes) %7s s CPU client, %6s s server\n' "$label" "$secs" "$kb" "$peak" "$cpu" "$server" >&2
    echo "$secs $kb $cpu $server"
}

# Waits until the server has archived the WAL file NAME.
phys_wait_archived() {
    until [ "$(psql -X -A -t -d postgres -c "SELECT last_archived_wal >= '$1' FROM pg_stat_archiver")" = t ]; do sleep 0.2; done
}

# Turns archiving on (a restart) with the command that feeds both repositories. pgBackRest's
# backup refuses an archive_command without the word pgbackrest in it (error 068), hence the
# script's name.
bench_physical_archiving() {
    local p=$1 rcpt=$2 conf=$3
    cat > "$p/weir-wal-and-pgbackrest.sh" <<EOF
set -e
"$bin/weir-wal" push --repo "$p/wal" -r "$rcpt" "\$1"
pgbackrest --config="$conf" --stanza=bench archive-push "\$1"
EOF
    chown postgres "$p/weir-wal-and-pgbackrest.sh"
    psql -X -q -d postgres -c "ALTER SYSTEM SET archive_mode = on" \
        -c "ALTER SYSTEM SET archive_command = 'bash $p/weir-wal-and-pgbackrest.sh %p'"
    "${SCRATCH_AS[@]}" "$SCRATCH_BINDIR/pg_ctl" -D "$SCRATCH_DIR/data" -w -m fast restart >/dev/null
}

bench_physical_pgbackrest_conf() {
    local p=$1 conf=$1/pgbackrest.conf
    {
        echo "[global]"
        echo "repo1-path=$p/pgbr"
        echo "repo1-cipher-type=aes-256-cbc"
        echo "repo1-cipher-pass=$(openssl rand -hex 24)"
        echo "repo1-retention-full=100"
        echo "compress-type=zst"
        echo "compress-level=3"
        echo "process-max=2"
        echo "start-fast=y"
        echo "lock-path=$p/pgbr-lock"
        echo "log-level-console=warn"
        echo "log-level-file=off"
        echo "[bench]"
        echo "pg1-path=$SCRATCH_DIR/data"
        echo "pg1-socket-path=$SCRATCH_DIR"
        echo "pg1-port=$SCRATCH_PORT"
        echo "pg1-user=postgres"
    } > "$conf"
    echo "$conf"
}

# The restore scripts, each from its tool's newest backup to the time target T, then the
# server started on its own port and waited for until recovery ended and it promoted.
bench_physical_scripts() {
    local p=$1 conf=$2 port=$3
    cat > "$p/start.sh" <<EOF
set -eu
"$SCRATCH_BINDIR/pg_ctl" -D "$p/restored" -l "$p/restored.log" -w -t 3600 \\
    -o "-p $port -k $p -c listen_addresses='' -c archive_mode=off" start >/dev/null
until [ "\$(psql -X -At -h "$p" -p $port -d postgres -c 'SELECT pg_is_in_recovery()')" = f ]; do
    "$SCRATCH_BINDIR/pg_ctl" -D "$p/restored" status >/dev/null || { tail -n 5 "$p/restored.log" >&2; exit 1; }
    sleep 0.1
done
EOF
    cat > "$p/restore-weir.sh" <<EOF
set -euo pipefail
"$bin/weir-restore-physical" -D "$p/restored" --from "\$(cat "$p/weir-latest")" --repo "$p/wal" -i "$p/key.txt" \\
    --target-time "\$(cat "$p/target")" --target-action promote
bash "$p/start.sh"
EOF
    cat > "$p/restore-pipe.sh" <<EOF
set -euo pipefail
"$bin/weir-get" -q "\$(cat "$p/weir-latest")" | "$bin/weir-encrypt" -d -i "$p/key.txt" | "$bin/weir-compress" -d |
    "$bin/weir-restore-physical" -D "$p/restored" --repo "$p/wal" -i "$p/key.txt" \\
        --target-time "\$(cat "$p/target")" --target-action promote
bash "$p/start.sh"
EOF
    cat > "$p/restore-pgbr.sh" <<EOF
set -euo pipefail
install -d -m 700 "$p/restored"
pgbackrest --config="$conf" --stanza=bench --pg1-path="$p/restored" --type=time \\
    --target="\$(cat "$p/target")" --target-action=promote restore
bash "$p/start.sh"
EOF
    chown postgres "$p"/*.sh
}

# After the backups: WAL to replay (about 20 segments), the target time, one row past it.
bench_physical_target() {
    local p=$1 last
    psql -X -q -d bench -c "CREATE TABLE phys_after AS SELECT g, md5(g::text) AS h FROM generate_series(1, 3000000) g"
    psql -X -A -t -d postgres -c "SELECT clock_timestamp()" > "$p/target"
    chown postgres "$p/target"
    sleep 1
    psql -X -q -d bench -c "CREATE TABLE phys_past_target AS SELECT 1 AS n"
    last=$(psql -X -A -t -d postgres -c "SELECT pg_walfile_name(pg_switch_wal())")
    phys_wait_archived "$last"
}

# What a restored server holds: the rows before the target, nothing after it.
bench_physical_check() {
    local p=$1 port=$2 got
    got=$(psql -X -A -t -h "$p" -p "$port" -d bench -c "SELECT count(*) || ' ' || (to_regclass('phys_past_target') IS NULL) FROM phys_after")
    [ "$got" = "3000000 true" ] || { echo "restored server holds the wrong data: $got" >&2; exit 1; }
    runuser -u postgres -- "$SCRATCH_BINDIR/pg_ctl" -D "$p/restored" -m immediate stop >/dev/null
    rm -rf "$p/restored"
}

bench_physical() {
    local p=$work/phys rcpt conf port
    echo "== physical: weir-basebackup and pgBackRest $(pgbackrest version | cut -d' ' -f2) full backups, restore to a time target, $runs runs each"
    mkdir -p "$p/wal" "$p/pgbr" "$p/pgbr-lock" "$p/weir" "$p/pgbb"
    age-keygen -o "$p/key.txt" 2>/dev/null
    rcpt=$(age-keygen -y "$p/key.txt")
    conf=$(bench_physical_pgbackrest_conf "$p")
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    chown -R postgres "$p"
    # The bench data alone: the databases the pairs before restored into go first.
    local db
    for db in r_pg r_weir r_job r_pbs3; do psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db"; done
    bench_physical_archiving "$p" "$rcpt" "$conf"
    runuser -u postgres -- pgbackrest --config="$conf" --stanza=bench stanza-create >/dev/null
    # weir-wal creates its cluster record with the first segment it archives.
    psql -X -q -d postgres -c "SELECT pg_switch_wal()" -c "CREATE TABLE IF NOT EXISTS phys_first ()" >/dev/null
    local first
    first=$(psql -X -A -t -d postgres -c "SELECT pg_walfile_name(pg_switch_wal())")
    phys_wait_archived "$first"
    bench_physical_scripts "$p" "$conf" "$port"

    local w=() wk=() wc=() ws=() wt=() g=() gk=() gc=() gs=() gt=() z=() zc=() x=() xc=() a b c d i
    # One full backup by each tool, into the arrays of its side.
    backup_weir() {
        read -r a b c d < <(phys_measure "weir-basebackup|...|put" bash -o pipefail -c \
            "'$bin/weir-basebackup' -q -c fast --repo '$p/wal' | '$bin/weir-compress' -3 -T2 |
            '$bin/weir-encrypt' -r $rcpt | '$bin/weir-put' -q '$p/weir/base-$i.tar.zst.age'")
        w+=("$a"); wk+=("$b"); wc+=("$c"); ws+=("$d"); wt+=("$(cat "$work/tree")")
    }
    backup_pgbr() {
        read -r a b c d < <(phys_measure "pgbackrest backup" pgbackrest --config="$conf" --stanza=bench --type=full backup)
        g+=("$a"); gk+=("$b"); gc+=("$c"); gs+=("$d"); gt+=("$(cat "$work/tree")")
    }
    # The two tools' backups last in each run, next to each other: the restores recover from
    # each tool's newest backup to one target, so every backup taken after one adds its
    # checkpoint and WAL switch to that one's recovery (the first of the pair still replays
    # the second's; the order alternates).
    for i in $(seq "$runs"); do
        rm -f "$p/weir"/* && rm -rf "$p/pgbb"/*
        read -r a _ c d < <(phys_measure "pg_basebackup -Ft -z" pg_basebackup -Ft -z -X none -c fast -D "$p/pgbb/gz")
        z+=("$a"); zc+=("$(python3 -c "print(round($c + $d, 2))")")
        read -r a _ c d < <(phys_measure "pg_basebackup -Ft | zstd -T2" bash -o pipefail -c "pg_basebackup -Ft -X none -c fast -D - | zstd -q -3 -T2 > '$p/pgbb/base.tar.zst'")
        x+=("$a"); xc+=("$(python3 -c "print(round($c + $d, 2))")")
        if [ $((i % 2)) = 1 ]; then backup_weir; backup_pgbr; else backup_pgbr; backup_weir; fi
    done
    local weir_bytes pgbr_bytes gz_bytes zst_bytes
    weir_bytes=$(stat -c %s "$p/weir/base-$runs.tar.zst.age")
    echo "$p/weir/base-$runs.tar.zst.age" > "$p/weir-latest"
    # The newest full backup's directory (its WAL lives under archive/, as weir's in wal/).
    pgbr_bytes=$(du -sb "$(find "$p/pgbr/backup/bench" -maxdepth 1 -name '*F' | sort | tail -n1)" | cut -f1)
    gz_bytes=$(du -sb "$p/pgbb/gz" | cut -f1)
    zst_bytes=$(stat -c %s "$p/pgbb/base.tar.zst")
    chown -R postgres "$p"

    bench_physical_target "$p"
    local rw=() rwk=() rg=() rgk=() rwc=() rgc=() rp=() rpc=()
    for i in $(seq "$runs"); do
        for tool in $( [ $((i % 2)) = 1 ] && echo weir pipe pgbr || echo pgbr pipe weir); do
            read -r a b c d < <(PHYS_COLD=1 phys_measure "restore+recover ($tool)" bash "$p/restore-$tool.sh")
            bench_physical_check "$p" "$port"
            case $tool in
                weir) rw+=("$a"); rwk+=("$b"); rwc+=("$c") ;;
                pipe) rp+=("$a"); rpc+=("$c") ;;
                *) rg+=("$a"); rgk+=("$b"); rgc+=("$c") ;;
            esac
        done
    done
    psql -X -q -d bench -c "DROP TABLE phys_after, phys_past_target" -c "DROP TABLE IF EXISTS phys_first" >/dev/null

    ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
    local bw bg bwc bgc
    bw=$(best "${w[@]}"); bg=$(best "${g[@]}")
    bwc=$(python3 -c "print(round(min(float(a) + float(b) for a, b in zip('${wc[*]}'.split(), '${ws[*]}'.split())), 2))")
    bgc=$(python3 -c "print(round(min(float(a) + float(b) for a, b in zip('${gc[*]}'.split(), '${gs[*]}'.split())), 2))")
    {
        printf '  %-26s weir %s s, pgBackRest %s s: %sx wall time (target <= 1.0)\n' "full base backup" "$bw" "$bg" "$(ratio "$bw" "$bg")"
        printf '  %-26s weir %s s, pgBackRest %s s (client + server): %sx (target <= 1.0)\n' "  CPU" "$bwc" "$bgc" "$(ratio "$bwc" "$bgc")"
        printf '  %-26s weir %d MiB, pgBackRest %d MiB (largest process): %sx (target <= 1.0)\n' "  peak RSS" \
            "$(($(maxi "${wk[@]}") / 1024))" "$(($(maxi "${gk[@]}") / 1024))" "$(ratio "$(maxi "${wk[@]}")" "$(maxi "${gk[@]}")")"
        printf '  %-26s weir %d MiB, pgBackRest %d MiB (all processes, summed): %sx\n' "  peak RSS" \
            "$(($(maxi "${wt[@]}") / 1024))" "$(($(maxi "${gt[@]}") / 1024))" "$(ratio "$(maxi "${wt[@]}")" "$(maxi "${gt[@]}")")"
        printf '  %-26s weir %s, pgBackRest %s bytes: %sx (target <= 1.0)\n' "  stored" "$weir_bytes" "$pgbr_bytes" "$(ratio "$weir_bytes" "$pgbr_bytes")"
        printf '  %-26s pg_basebackup -Ft -z %s s, %s s CPU, %s bytes; | zstd -T2 %s s, %s s CPU, %s bytes (unencrypted, for scale)\n' "  for scale" \
            "$(best "${z[@]}")" "$(best "${zc[@]}")" "$gz_bytes" "$(best "${x[@]}")" "$(best "${xc[@]}")" "$zst_bytes"
        printf '  %-26s weir --from %s s, pgBackRest %s s: %sx wall time (target <= 0.9); client CPU %s s vs %s s; peak RSS %d MiB vs %d MiB\n' \
            "restore + recover to time" "$(best "${rw[@]}")" "$(best "${rg[@]}")" "$(ratio "$(best "${rw[@]}")" "$(best "${rg[@]}")")" \
            "$(best "${rwc[@]}")" "$(best "${rgc[@]}")" "$(($(maxi "${rwk[@]}") / 1024))" "$(($(maxi "${rgk[@]}") / 1024))"
        printf '  %-26s weir-get | weir-encrypt -d | weir-compress -d | weir-restore-physical %s s: %sx pgBackRest; client CPU %s s\n' \
            "  the pipe form" "$(best "${rp[@]}")" "$(ratio "$(best "${rp[@]}")" "$(best "${rg[@]}")")" "$(best "${rpc[@]}")"
    } >> "$work/stages"
    bench_physical_delta "$p" "$port"
    bench_physical_incremental "$p" "$rcpt" "$conf"
}

# Delta restore (issue 34), by range (weir-restore-physical --delta --from), over two copies
# of weir's newest backup, each restored to consistency, opened, changed and stopped: one that
# ran a day of bench-dedup.sql (1% of the rows of users and events updated, 0.5% of every
# table inserted, 0.2% deleted, VACUUM over every table), and one where only 1% of the rows of
# users were updated; against a restore into an empty directory. None is started after. Each
# copy is made once and copied afresh before each of $runs deltas (a delta makes it the
# backup again); the best of each counts, as elsewhere.
bench_physical_delta() {
    local p=$1 port=$2 i a day=() one=() full=() said_day said_one
    local args=(--from "$(cat "$p/weir-latest")" --repo "$p/wal" -i "$p/key.txt" --target-immediate --target-action promote)
    diverged() { # NAME, then psql's arguments for the change
        local name=$1; shift
        rm -rf "$p/restored"
        runuser -u postgres -- "$bin/weir-restore-physical" -D "$p/restored" "${args[@]}" 2>/dev/null
        runuser -u postgres -- bash "$p/start.sh"
        psql -X -q -h "$p" -p "$port" -v ON_ERROR_STOP=1 -v n="$gb" -v d=3 -d bench "$@"
        runuser -u postgres -- "$SCRATCH_BINDIR/pg_ctl" -D "$p/restored" -m fast stop >/dev/null
        mv "$p/restored" "$p/$name"
    }
    delta() { # NAME: a delta restore over a fresh copy of it; prints its seconds
        rm -rf "$p/restored"
        cp -a "$p/$1" "$p/restored"
        phys_measure "restore --delta ($1)" "$bin/weir-restore-physical" -D "$p/restored" --delta "${args[@]}" | cut -d' ' -f1
    }
    diverged day -f scripts/lib/bench-dedup.sql
    diverged one -c "UPDATE users SET score = score + 1 WHERE id % 100 = 0"
    for i in $(seq "$runs"); do
        day+=("$(delta day)")
        said_day=$(grep -o 'wrote .*' "$work/err" | head -n1)
        one+=("$(delta one)")
        said_one=$(grep -o 'wrote .*' "$work/err" | head -n1)
        rm -rf "$p/restored"
        read -r a _ < <(phys_measure "restore into an empty directory" "$bin/weir-restore-physical" -D "$p/restored" "${args[@]}")
        full+=("$a")
    done
    rm -rf "$p/restored" "$p/day" "$p/one"
    local d o f
    d=$(best "${day[@]}"); o=$(best "${one[@]}"); f=$(best "${full[@]}")
    {
        printf '  %-26s weir --delta %s s, into an empty directory %s s: %sx (target <= 0.3); it %s\n' \
            "delta restore, a day" "$d" "$f" "$(python3 -c "print(f'{$d/$f:.2f}')")" "$said_day"
        printf '  %-26s weir --delta %s s: %sx; it %s\n' \
            "delta restore, one table" "$o" "$(python3 -c "print(f'{$o/$f:.2f}')")" "$said_one"
    } >> "$work/stages"
}

# Incremental backups (issue 34): a full backup by each tool, read from the data directory
# (weir-basebackup --pgdata -j2, which keeps its manifest for the incremental), then one day
# of bench-dedup.sql's changes (1% of the rows of users and events updated, 0.5% inserted,
# 0.2% deleted, VACUUM), then an incremental by each: weir's against the full's manifest,
# pgBackRest's --type=incr. One run each; time and stored bytes.
bench_physical_incremental() {
    local p=$1 rcpt=$2 conf=$3 fw fg iw ig
    local pipe="'$bin/weir-compress' -3 -T2 | '$bin/weir-encrypt' -r $rcpt | '$bin/weir-put' -q"
    local read="'$bin/weir-basebackup' -q -c fast --repo '$p/wal' --pgdata '$SCRATCH_DIR/data' -j2"
    read -r fw _ < <(phys_measure "weir-basebackup --pgdata full" bash -o pipefail -c \
        "$read --manifest-file '$p/full.manifest' | $pipe '$p/weir/pgdata-full.tar.zst.age'")
    read -r fg _ < <(phys_measure "pgbackrest backup (full)" pgbackrest --config="$conf" --stanza=bench --type=full backup)
    psql -X -q -v ON_ERROR_STOP=1 -v n="$gb" -v d=2 -d bench -f scripts/lib/bench-dedup.sql
    read -r iw _ < <(phys_measure "weir-basebackup incremental" bash -o pipefail -c \
        "$read --incremental-from '$p/full.manifest' | $pipe '$p/weir/pgdata-incr.tar.zst.age'")
    read -r ig _ < <(phys_measure "pgbackrest backup --type=incr" pgbackrest --config="$conf" --stanza=bench --type=incr backup)
    local wfull wincr gfull gincr
    wfull=$(stat -c %s "$p/weir/pgdata-full.tar.zst.age"); wincr=$(stat -c %s "$p/weir/pgdata-incr.tar.zst.age")
    gfull=$(du -sb "$(find "$p/pgbr/backup/bench" -maxdepth 1 -name '*F' | sort | tail -n1)" | cut -f1)
    gincr=$(du -sb "$(find "$p/pgbr/backup/bench" -maxdepth 1 -name '*I' | sort | tail -n1)" | cut -f1)
    {
        printf '  %-26s weir --pgdata -j2 %s s, pgBackRest %s s: %sx wall time (target <= 0.8); stored %s against %s bytes: %sx\n' \
            "full, read locally" "$fw" "$fg" "$(ratio "$fw" "$fg")" "$wfull" "$gfull" "$(ratio "$wfull" "$gfull")"
        printf '  %-26s weir %s s, pgBackRest --type=incr %s s: %sx wall time (target <= 1.0); stored %s against %s bytes: %sx (target <= 1.0), %sx weir'"'"'s full (target <= 0.2)\n' \
            "incremental, 1% changed" "$iw" "$ig" "$(ratio "$iw" "$ig")" "$wincr" "$gincr" "$(ratio "$wincr" "$gincr")" "$(ratio "$wincr" "$wfull")"
    } >> "$work/stages"
}
