#!/usr/bin/env bash
# Speed and memory, side by side in one run, on one throwaway cluster:
#   weir-extract -j2 > /dev/null      against  pg_dump -Fd -j2 -Z0
#   weir-load -j2 (from a file)       against  pg_restore -j2 (from the pg_dump directory)
# on a generated mixed-type dataset of about BENCH_GB gigabytes (default 1). Prints wall time,
# peak RSS and the ratios weir/reference (below 1.0 means weir is faster or smaller).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/prereqs.sh
. scripts/lib/scratch-pg.sh
weir_install_prereqs
command -v /usr/bin/time >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cargo build --release --quiet
bin=$PWD/target/release
gb=${BENCH_GB:-1}
work=$(mktemp -d "${TMPDIR:-/tmp}/weir-bench.XXXXXX")
chmod 755 "$work"
SCRATCH_PG_OPTS="-c max_wal_size=8GB -c checkpoint_timeout=30min -c shared_buffers=256MB"
trap 'scratch_pg_stop; rm -rf "$work"' EXIT
scratch_pg_start

echo "== generating ~${gb} GB of mixed-type data"
psql -X -q -d postgres -c 'CREATE DATABASE bench'
# Row counts scale with BENCH_GB; about 45% events, 35% logs, 15% users, 5% small tables.
psql -X -q -v ON_ERROR_STOP=1 -v n="$gb" -d bench -f scripts/lib/bench-data.sql
psql -X -A -t -d bench -c "SELECT 'dataset: ' || pg_size_pretty(sum(pg_relation_size(oid))) || ' in tables' FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"

measure() { # label, then the command; reports wall time, peak RSS and CPU; prints "seconds kilobytes"
    local label=$1; shift
    psql -X -q -d postgres -c CHECKPOINT
    sync
    /usr/bin/time -f "%e %M %U %S" -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    read -r secs kb usr sys < "$work/time"
    printf '%-30s %7.2f s wall %8d KiB peak RSS %7.2f s CPU (client side)\n' "$label" "$secs" "$kb" "$(python3 -c "print($usr+$sys)")" >&2
    echo "$secs $kb"
}

echo "== extract"
read -r e_pg e_pg_kb < <(measure "pg_dump -Fd -j2 -Z0" pg_dump -Fd -j2 -Z0 -f "$work/dump" bench)
read -r e_w e_w_kb < <(measure "weir-extract -j2 > /dev/null" sh -c "'$bin/weir-extract' -q -j2 bench > /dev/null")
"$bin/weir-extract" -q -j2 -f "$work/bench.weir" bench
echo "== load"
psql -X -q -d postgres -c 'CREATE DATABASE r_pg'
read -r l_pg l_pg_kb < <(measure "pg_restore -j2" pg_restore -j2 -d r_pg "$work/dump")
read -r l_w l_w_kb < <(measure "weir-load -j2" sh -c "'$bin/weir-load' -q -j2 --create r_weir < '$work/bench.weir'")

ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
echo
echo "ratios, weir / reference (lower is better):"
echo "  extract wall time  $(ratio "$e_w" "$e_pg")x   (target <= 1.0)"
echo "  load wall time     $(ratio "$l_w" "$l_pg")x   (target <= 0.8)"
echo "  extract peak RSS   $((e_w_kb / 1024)) MiB    (target < 256 MiB; pg_dump $((e_pg_kb / 1024)) MiB)"
echo "  load peak RSS      $((l_w_kb / 1024)) MiB    (pg_restore $((l_pg_kb / 1024)) MiB)"
