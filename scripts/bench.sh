#!/usr/bin/env bash
# Speed and memory, side by side in one run, on one throwaway cluster:
#   weir-extract -j2 > /dev/null      against  pg_dump -Fd -j2 -Z0
#   weir-load -j2 (from a file)       against  pg_restore -j2 (from the pg_dump directory)
#   weir-compress -T2, weir-compress -d, weir-encrypt, weir-encrypt -d
#                                     against  zstd -3 -T2, zstd -d, age, age -d (same archive)
#   weir-mask (3 pseudonym rules; pass-through; in the backup pipeline), against the targets
#   weir-put, weir-get                against  aws s3 cp -, aws s3 cp URL - (same archive, same
#                                              local s3s-fs server), and both against the
#                                              server's own limit (scripts/lib/s3-limit.py)
#   backup.sh, restore.sh             against  pg_dump -Fc | gpg | aws s3 cp, and back
#                                              (postgres-backup-s3's job, streaming)
#   weir-wal push, fetch              against  pgbackrest archive-push, archive-get, sync
#                                              and async (scripts/lib/bench-wal.sh)
#   weir-basebackup, restore-physical against  pgbackrest backup, restore (a full backup, then
#                                              recovery to a time target; pg_basebackup for
#                                              scale: scripts/lib/bench-physical.sh)
#   weir-extract, weir-load on 5,000  against  pg_dump -Fd -j2 -Z0, pg_restore -j2 (20,000 too:
#   small tables                               BENCH_TABLES="5000 20000"; bench-tables.sh)
#   weir-cdc, weir-cdc | weir-apply   against  pg_recvlogical (wal2json, test_decoding), a
#                                              native subscription (scripts/lib/bench-cdc.sh)
#   weir-dedup, 30 daily backups      against  restic backup --stdin, and the plain pipeline
#                                              (scripts/lib/bench-dedup.sh)
# on a generated mixed-type dataset of about BENCH_GB gigabytes (default 1). Prints wall time,
# peak RSS and the ratios weir/reference (below 1.0 means weir is faster or smaller).
# BENCH_RUNS (default 3) runs of each, in alternating order; the best run counts.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/prereqs.sh
. scripts/lib/scratch-pg.sh
gb=${BENCH_GB:-1}
# The peak, at BENCH_GB=1 (the full run of 2026-12-02): the cluster at about 5 GB (the data, the
# restored databases, WAL), the pg_dump directory and the archives, two physical repositories
# and a restored cluster beside it: about 14 GB. Checked before anything is made.
bench_gb=$((gb * 16))
echo "== bench.sh needs about $bench_gb GB free under ${TMPDIR:-/tmp} (BENCH_GB=$gb) and 2 GB for the release build" >&2
weir_require_space scripts/bench.sh . 2 "${TMPDIR:-/tmp}" "$bench_gb"
weir_install_prereqs
command -v /usr/bin/time >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cargo build --release --quiet
bin=$PWD/target/release
work=$(mktemp -d "${TMPDIR:-/tmp}/weir-bench.XXXXXX")
chmod 755 "$work"
SCRATCH_PG_OPTS="-c max_wal_size=8GB -c checkpoint_timeout=30min -c shared_buffers=256MB"
S3_PID=
bench_cleanup() {
    # A server the physical pair restored, if a failure left it running.
    [ ! -f "$work/phys/restored/postmaster.pid" ] || "${SCRATCH_AS[@]}" "$SCRATCH_BINDIR/pg_ctl" -D "$work/phys/restored" -m immediate stop >/dev/null 2>&1 || true
    scratch_pg_stop
    [ -z "$S3_PID" ] || kill "$S3_PID" 2>/dev/null
    # stunnel4 daemonizes (the WAL pair's S3 leg); pgBackRest's async workers outlive a failure.
    [ ! -f "$work/stunnel.pid" ] || kill "$(cat "$work/stunnel.pid")" 2>/dev/null || true
    pkill -u postgres -f "pgbackrest --config=$work" 2>/dev/null || true
    rm -rf "$work"
}
trap bench_cleanup EXIT
scratch_pg_start

echo "== generating ~${gb} GB of mixed-type data"
psql -X -q -d postgres -c 'CREATE DATABASE bench'
# Row counts scale with BENCH_GB; about 45% events, 35% logs, 15% users, 5% small tables.
psql -X -q -v ON_ERROR_STOP=1 -v n="$gb" -d bench -f scripts/lib/bench-data.sql
psql -X -A -t -d bench -c "SELECT 'dataset: ' || pg_size_pretty(sum(pg_relation_size(oid))) || ' in tables' FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"

busy_ticks() { # the machine's busy CPU time so far, in clock ticks (user, nice, system, irq and softirq of /proc/stat's cpu line)
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat
}
measure() { # label, then the command; reports wall time, peak RSS and CPU; prints "seconds kilobytes"
    local label=$1; shift
    psql -X -q -d postgres -c CHECKPOINT
    sync
    local before after
    before=$(busy_ticks)
    /usr/bin/time -f "%e %M %U %S" -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    after=$(busy_ticks)
    read -r secs kb usr sys < "$work/time"
    # The machine's busy CPU (server and client) against what its cores could give in the
    # same wall time: near 100%, only less work can make the pair faster (ARCHITECTURE.md,
    # "Where load time goes").
    printf '%-30s %7.2f s wall %8d KiB peak RSS %7.2f s CPU (client side), machine busy %5.2f s of %5.2f\n' "$label" "$secs" "$kb" \
        "$(python3 -c "print($usr+$sys)")" "$(python3 -c "print(($after-$before)/$(getconf CLK_TCK))")" "$(python3 -c "print($secs*$(nproc))")" >&2
    echo "$secs $kb"
}

runs=${BENCH_RUNS:-3}
best() { python3 -c "import sys; print(min(float(x) for x in sys.argv[1:]))" "$@"; }
maxi() { python3 -c "import sys; print(max(int(x) for x in sys.argv[1:]))" "$@"; }
declare -a E_PG E_W L_PG L_W E_PG_KB E_W_KB L_PG_KB L_W_KB
ext_pg() { rm -rf "$work/dump"; measure "pg_dump -Fd -j2 -Z0" pg_dump -Fd -j2 -Z0 -f "$work/dump" bench; }
ext_w() { measure "weir-extract -j2 > /dev/null" sh -c "'$bin/weir-extract' -q -j2 bench > /dev/null"; }
load_pg() {
    psql -X -q -d postgres -c 'DROP DATABASE IF EXISTS r_pg' -c 'CREATE DATABASE r_pg' 2>/dev/null
    measure "pg_restore -j2" pg_restore -j2 -d r_pg "$work/dump"
}
load_w() {
    # Into an empty database made beforehand, as for pg_restore (CREATE DATABASE is 60 ms).
    psql -X -q -d postgres -c 'DROP DATABASE IF EXISTS r_weir' -c 'CREATE DATABASE r_weir' 2>/dev/null
    measure "weir-load -j2" sh -c "'$bin/weir-load' -q -j2 r_weir < '$work/bench.weir'"
}
# Each pair runs $runs times, alternating which goes first (the second of a pair finds warm
# caches and recycled WAL segments); the best run of each counts.
echo "== extract, $runs runs each"
"$bin/weir-extract" -q -j2 -f "$work/bench.weir" bench
for i in $(seq "$runs"); do
    if [ $((i % 2)) = 1 ]; then read -r a b < <(ext_pg); read -r c d < <(ext_w)
    else read -r c d < <(ext_w); read -r a b < <(ext_pg); fi
    E_PG+=("$a"); E_PG_KB+=("$b"); E_W+=("$c"); E_W_KB+=("$d")
done
echo "== load, $runs runs each"
for i in $(seq "$runs"); do
    if [ $((i % 2)) = 1 ]; then read -r a b < <(load_pg); read -r c d < <(load_w)
    else read -r c d < <(load_w); read -r a b < <(load_pg); fi
    L_PG+=("$a"); L_PG_KB+=("$b"); L_W+=("$c"); L_W_KB+=("$d")
done
e_pg=$(best "${E_PG[@]}"); e_w=$(best "${E_W[@]}"); l_pg=$(best "${L_PG[@]}"); l_w=$(best "${L_W[@]}")
e_pg_kb=$(maxi "${E_PG_KB[@]}"); e_w_kb=$(maxi "${E_W_KB[@]}"); l_pg_kb=$(maxi "${L_PG_KB[@]}"); l_w_kb=$(maxi "${L_W_KB[@]}")

ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
echo
echo "best of $runs: pg_dump $e_pg s, weir-extract $e_w s, pg_restore $l_pg s, weir-load $l_w s"
echo "ratios, weir / reference (lower is better):"
echo "  extract wall time  $(ratio "$e_w" "$e_pg")x   (target <= 0.9)"
echo "  load wall time     $(ratio "$l_w" "$l_pg")x   (target <= 0.9)"
echo "  extract peak RSS   $((e_w_kb / 1024)) MiB    (target < 256 MiB; pg_dump $((e_pg_kb / 1024)) MiB)"
echo "  load peak RSS      $((l_w_kb / 1024)) MiB    (pg_restore $((l_pg_kb / 1024)) MiB)"

# Byte-stream stages on the archive itself: throughput ratio weir/reference (higher is better).
arch_bytes=$(stat -c %s "$work/bench.weir")
age-keygen -o "$work/key.txt" 2>/dev/null
recipient=$(age-keygen -y "$work/key.txt")
zstd -q -3 -T2 -c < "$work/bench.weir" > "$work/bench.weir.zst"
age -r "$recipient" < "$work/bench.weir" > "$work/bench.weir.age"
stage_pair() { # name, reference command, weir command, input file[, throughput target]
    local name=$1 ref=$2 ours=$3 file=$4 target=${5:->= 0.95} a b c d rt=() wt=() rk=() wk=()
    for i in $(seq "$runs"); do
        if [ $((i % 2)) = 1 ]; then
            read -r a b < <(measure "$name: reference" sh -c "$ref < '$file' > /dev/null")
            read -r c d < <(measure "$name: weir" sh -c "$ours < '$file' > /dev/null")
        else
            read -r c d < <(measure "$name: weir" sh -c "$ours < '$file' > /dev/null")
            read -r a b < <(measure "$name: reference" sh -c "$ref < '$file' > /dev/null")
        fi
        rt+=("$a"); rk+=("$b"); wt+=("$c"); wk+=("$d")
    done
    local r w
    r=$(best "${rt[@]}"); w=$(best "${wt[@]}")
    pair_weir=$w pair_ref=$r
    local wkb rkb
    wkb=$(maxi "${wk[@]}"); rkb=$(maxi "${rk[@]}")
    printf '  %-26s weir %5.0f MB/s, reference %5.0f MB/s: %sx throughput (target %s); peak RSS weir %d MiB, reference %d MiB: %sx\n' \
        "$name" "$(python3 -c "print($arch_bytes/1e6/$w)")" "$(python3 -c "print($arch_bytes/1e6/$r)")" \
        "$(python3 -c "print(f'{$r/$w:.2f}')")" "$target" "$((wkb / 1024))" "$((rkb / 1024))" \
        "$(python3 -c "print(f'{$wkb/$rkb:.2f}')")" >> "$work/stages"
}
echo "== byte-stream stages on the $((arch_bytes / 1000000)) MB archive, $runs runs each"
: > "$work/stages"
stage_pair "compress (zstd -3 -T2)" "zstd -q -3 -T2 -c" "'$bin/weir-compress' -3 -T2" "$work/bench.weir"
stage_pair "decompress (zstd -d)" "zstd -q -d -c" "'$bin/weir-compress' -d" "$work/bench.weir.zst"
stage_pair "encrypt (age -r)" "age -r $recipient" "'$bin/weir-encrypt' -r $recipient" "$work/bench.weir"
stage_pair "decrypt (age -d)" "age -d -i '$work/key.txt'" "'$bin/weir-encrypt' -d -i '$work/key.txt'" "$work/bench.weir.age"

# weir-mask: three deterministic pseudonym rules on public.users (a keyed permutation of id,
# full_name, email), pinned to one core; the other tables through an empty rule set (pure
# pass-through, also one core: by default their digests are carried over unhashed, with
# --verify hashed and checked too); and the backup pipeline with and without weir-mask.
printf '[tables."public.users"]\ncolumns.id = "permute"\ncolumns.name = "full_name"\ncolumns.email = "email"\n' > "$work/mask.toml"
: > "$work/empty.toml"
"$bin/weir-extract" -q -t public.users bench > "$work/users.weir"
"$bin/weir-extract" -q -T public.users bench > "$work/rest.weir"
export WEIR_MASK_KEY=bench-mask-key
echo "== weir-mask, $runs runs each"
mt=(); pt=(); pv=(); pp=(); pm=()
for i in $(seq "$runs"); do
    read -r a _ < <(measure "weir-mask users (1 core)" taskset -c 0 "$bin/weir-mask" -c "$work/mask.toml" "$work/users.weir")
    read -r b _ < <(measure "weir-mask others (1 core)" taskset -c 0 "$bin/weir-mask" -c "$work/empty.toml" "$work/rest.weir")
    read -r v _ < <(measure "weir-mask --verify others" taskset -c 0 "$bin/weir-mask" --verify -c "$work/empty.toml" "$work/rest.weir")
    read -r c _ < <(measure "extract | compress" sh -c "'$bin/weir-extract' -q -j2 bench | '$bin/weir-compress' -T2")
    read -r d _ < <(measure "extract | mask | compress" sh -c "'$bin/weir-extract' -q -j2 bench | '$bin/weir-mask' -c '$work/mask.toml' | '$bin/weir-compress' -T2")
    mt+=("$a"); pt+=("$b"); pv+=("$v"); pp+=("$c"); pm+=("$d")
done
users_bytes=$(stat -c %s "$work/users.weir"); rest_bytes=$(stat -c %s "$work/rest.weir")
{
    printf '  %-26s %5.0f MB/s on one core (target >= 150)\n' "mask 3 pseudonym rules" "$(python3 -c "print($users_bytes/1e6/$(best "${mt[@]}"))")"
    printf '  %-26s %5.0f MB/s on one core (target >= 1000)\n' "mask pass-through" "$(python3 -c "print($rest_bytes/1e6/$(best "${pt[@]}"))")"
    printf '  %-26s %5.0f MB/s on one core\n' "mask pass-through --verify" "$(python3 -c "print($rest_bytes/1e6/$(best "${pv[@]}"))")"
    printf '  %-26s %s s with weir-mask, %s s without: %sx wall time (target <= 1.10)\n' "extract|mask|compress" "$(best "${pm[@]}")" "$(best "${pp[@]}")" "$(python3 -c "print(f'{$(best "${pm[@]}")/$(best "${pp[@]}"):.2f}')")"
} >> "$work/stages"

# weir-extract --subset: a tenth of the events with every user they reference (through a
# declared virtual key: the bench schema has none), against the same two tables whole.
echo "== weir-extract --subset, $runs runs each"
st=(); ft=()
subset_args=(-q -j2 -t public.events -t public.users)
for i in $(seq "$runs"); do
    read -r a _ < <(measure "extract --subset (10% of events)" "$bin/weir-extract" "${subset_args[@]}" \
        --subset 'public.events:id % 10 = 0' --virtual-fk 'public.events(user_id)->public.users(id)' \
        --stats "$work/subset.json" bench)
    read -r b _ < <(measure "extract events and users" "$bin/weir-extract" "${subset_args[@]}" \
        --stats "$work/whole.json" bench)
    st+=("$a"); ft+=("$b")
done
rows() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['rows'])" "$1"; }
printf '  %-26s %s s for %s rows; whole tables %s s for %s rows\n' "extract --subset 10%" \
    "$(best "${st[@]}")" "$(rows "$work/subset.json")" "$(best "${ft[@]}")" "$(rows "$work/whole.json")" >> "$work/stages"

# Object storage: one local s3s-fs server; the AWS CLI and weir each upload the archive from
# standard input, then download one object (written by weir-put, so weir-get also verifies
# its full-object checksum) to standard output.
command -v aws >/dev/null 2>&1 || pip install --quiet awscli
command -v s3s-fs >/dev/null 2>&1 || PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$PATH
s3port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/s3/bench"
s3s-fs --host 127.0.0.1 --port "$s3port" --access-key bench --secret-key bench-secret-key "$work/s3" >/dev/null 2>&1 &
S3_PID=$!
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_REGION=us-east-1 \
    AWS_ENDPOINT_URL=http://127.0.0.1:$s3port AWS_EC2_METADATA_DISABLED=true
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $s3port))" 2>/dev/null; do sleep 0.1; done
echo "== object storage: the $((arch_bytes / 1000000)) MB archive to and from s3s-fs, $runs runs each ($(aws --version 2>&1 | cut -d' ' -f1))"
"$bin/weir-put" -q s3://bench/archive < "$work/bench.weir"
stage_pair "upload (aws s3 cp -)" "aws s3 cp - s3://bench/by-aws" "'$bin/weir-put' -q s3://bench/by-weir" "$work/bench.weir" ">= 2.0"
put_w=$pair_weir put_r=$pair_ref
stage_pair "download (aws s3 cp URL -)" "aws s3 cp s3://bench/archive -" "'$bin/weir-get' -q s3://bench/archive" /dev/null ">= 2.0"
get_w=$pair_weir get_r=$pair_ref
echo "  (object storage: peak RSS target <= 0.5x)" >> "$work/stages"
# The server's own limit: the same bytes by 8 requests at once from a client that only moves
# them (scripts/lib/s3-limit.py), best of the runs; weir's and the CLI's share of it.
lp=() lg=()
for i in $(seq "$runs"); do
    read -r a b < <(python3 scripts/lib/s3-limit.py "$work/bench.weir" bench archive 8)
    lp+=("$a"); lg+=("$b")
done
share() { python3 -c "print(f'{$arch_bytes / 1e6 / $1 / $2:.2f}')"; }
put_limit=$(printf '%s\n' "${lp[@]}" | sort -n | tail -1); get_limit=$(printf '%s\n' "${lg[@]}" | sort -n | tail -1)
printf '  %-26s PUT %s MB/s: weir-put %sx of it, aws %sx (target >= 0.9x); GET %s MB/s: weir-get %sx, aws %sx (target >= 0.9x)\n' \
    "s3s-fs limit, 8 at once" "$put_limit" "$(share "$put_w" "$put_limit")" "$(share "$put_r" "$put_limit")" \
    "$get_limit" "$(share "$get_w" "$get_limit")" "$(share "$get_r" "$get_limit")" >> "$work/stages"

# The whole jobs: scripts/backup.sh and scripts/restore.sh (one database, passphrase, zstd,
# to s3s-fs) against postgres-backup-s3's pipeline in its streaming form (pg_dump custom
# format, gpg --symmetric, aws s3 cp; pg_restore from stdin on the way back).
command -v gpg >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq gnupg >/dev/null; }
printf 'bench passphrase\n' > "$work/pp"
jobs_env=(env -u PGHOST -u PGPORT -u PGUSER POSTGRES_HOST="$PGHOST" POSTGRES_PORT="$PGPORT" POSTGRES_USER=postgres
    POSTGRES_DATABASE=bench BACKUP_GLOBALS=0 S3_BUCKET=bench S3_PREFIX=jobs S3_ENDPOINT="$AWS_ENDPOINT_URL"
    PASSPHRASE_FILE="$work/pp" WEIR_BIN_DIR="$bin")
gpg_pp=(--batch --quiet --pinentry-mode loopback --passphrase-file "$work/pp")
job_runs=${BENCH_JOB_RUNS:-2}
echo "== backup and restore jobs, $job_runs runs each"
jb=(); jr=(); pb=(); pr=(); jbk=(); jrk=(); pbk=(); prk=()
for i in $(seq "$job_runs"); do
    read -r a b < <(measure "backup.sh" "${jobs_env[@]}" scripts/backup.sh)
    read -r c d < <(measure "pg_dump|gpg|aws s3 cp" sh -c "pg_dump --format=custom bench | gpg ${gpg_pp[*]} --symmetric | aws s3 cp - s3://bench/pbs3/bench.dump.gpg")
    psql -X -q -d postgres -c 'DROP DATABASE IF EXISTS r_job'
    read -r e f < <(measure "restore.sh" "${jobs_env[@]}" RESTORE_TARGET_DATABASE=r_job RESTORE_CREATE=1 RESTORE_JOBS=2 scripts/restore.sh)
    psql -X -q -d postgres -c 'DROP DATABASE IF EXISTS r_pbs3' -c 'CREATE DATABASE r_pbs3'
    read -r g h < <(measure "aws s3 cp|gpg -d|pg_restore" sh -c "aws s3 cp s3://bench/pbs3/bench.dump.gpg - | gpg ${gpg_pp[*]} -d | pg_restore -d r_pbs3")
    jb+=("$a"); jbk+=("$b"); pb+=("$c"); pbk+=("$d"); jr+=("$e"); jrk+=("$f"); pr+=("$g"); prk+=("$h")
done
{
    printf '  %-26s backup.sh %s s, pg_dump|gpg|aws %s s: %sx wall time; peak RSS %d MiB vs %d MiB\n' "backup job (1 database)" \
        "$(best "${jb[@]}")" "$(best "${pb[@]}")" "$(python3 -c "print(f'{$(best "${jb[@]}")/$(best "${pb[@]}"):.2f}')")" \
        "$(($(maxi "${jbk[@]}") / 1024))" "$(($(maxi "${pbk[@]}") / 1024))"
    printf '  %-26s restore.sh %s s, aws|gpg|pg_restore %s s: %sx wall time; peak RSS %d MiB vs %d MiB\n' "restore job (1 database)" \
        "$(best "${jr[@]}")" "$(best "${pr[@]}")" "$(python3 -c "print(f'{$(best "${jr[@]}")/$(best "${pr[@]}"):.2f}')")" \
        "$(($(maxi "${jrk[@]}") / 1024))" "$(($(maxi "${prk[@]}") / 1024))"
    echo "  (stored: weir $("$bin/weir-ls" --catalog s3://bench/jobs/ | awk 'NR > 1 { s = $3 } END { print s }') bytes, pg_dump -Fc+gpg $("$bin/weir-ls" --json s3://bench/pbs3/ | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["size"])') bytes)"
} >> "$work/stages"

# WAL archiving: weir-wal against pgBackRest (scripts/lib/bench-wal.sh).
command -v pgbackrest >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq --no-install-recommends pgbackrest >/dev/null; }
. scripts/lib/bench-wal.sh
bench_wal
bench_wal_s3

# Base backups and point-in-time recovery: weir against pgBackRest (scripts/lib/bench-physical.sh).
. scripts/lib/bench-physical.sh
bench_physical

# Many small tables: weir against pg_dump and pg_restore (scripts/lib/bench-tables.sh).
. scripts/lib/bench-tables.sh
bench_tables

# A month of daily backups: weir-dedup against restic and the plain pipeline
# (scripts/lib/bench-dedup.sh).
command -v restic >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq --no-install-recommends restic >/dev/null; }
. scripts/lib/bench-dedup.sh
bench_dedup

# Change data capture: weir-cdc against pg_recvlogical, weir-apply against a subscription
# (scripts/lib/bench-cdc.sh).
. scripts/lib/bench-cdc.sh
bench_cdc

echo
echo "byte-stream stages:"
cat "$work/stages"
