# shellcheck shell=bash
# The many-tables pair of scripts/bench.sh (issue 30): a database of N small tables (a primary
# key and 20 rows each, as a schema- or table-per-tenant application has), restored on the
# scratch server's default lock settings, for N = 5,000 (BENCH_TABLES="5000 20000" adds the
# long run). Above 10,000 tables neither pg_dump nor weir-extract can read the database on a
# default server (pg_dump 15 stopped with "out of shared memory" at its LOCK TABLE of the
# 12,630th table, 2026-12-04), so the extracts of those sizes run with
# max_locks_per_transaction = 256, and the server is back on its defaults for the loads.
#
#   weir-extract -j2 > /dev/null      against  pg_dump -Fd -j2 -Z0
#   weir-load -j2 --create            against  pg_restore -j2 (into a new database)
# and, without a peer, how the other stages scale with the table count: weir-inspect --verify,
# weir-mask passing the archive through, and weir-extract --subset from one table.
# Sourced by bench.sh after its own pairs: uses $bin, $work, $runs, measure, best and the
# scratch cluster's PG* variables. Appends its lines to $work/stages.
# shellcheck disable=SC2154 # work, runs and bin come from bench.sh.

bench_tables_db() { # N: creates many_N, committing every 1,000 tables
    local n=$1
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS many_$n" -c "CREATE DATABASE many_$n"
    psql -X -q -v ON_ERROR_STOP=1 -d "many_$n" <<SQL
DO \$\$ BEGIN FOR i IN 1..$n LOOP
  EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, name text, at timestamptz)', i);
  EXECUTE format('INSERT INTO t%s SELECT g, %L || g, now() FROM generate_series(1, 20) g', i, 'tenant ' || i || ' row ');
  IF i % 1000 = 0 THEN COMMIT; END IF;
END LOOP; END \$\$;
SQL
}

bench_tables_locks() { # 256 | default: max_locks_per_transaction, and a restart
    if [ "$1" = default ]; then
        psql -X -q -d postgres -c "ALTER SYSTEM RESET max_locks_per_transaction"
    else
        psql -X -q -d postgres -c "ALTER SYSTEM SET max_locks_per_transaction = $1"
    fi
    scratch_pg_restart
}

bench_tables_one() { # N
    local n=$1 db=many_$1 a b c d ext_pg=() ext_w=() load_pg=() load_w=() v=() m=() s=()
    local raised=$((n > 10000))
    echo "== $n tables of 20 rows, default lock settings$([ "$raised" = 0 ] || echo " for the loads"), $runs runs each"
    bench_tables_db "$n"
    [ "$raised" = 0 ] || bench_tables_locks 256
    "$bin/weir-extract" -q -j2 -f "$work/many.weir" "$db"
    rm -rf "$work/many.dump"
    pg_dump -Fd -j2 -Z0 -f "$work/many.dump" "$db"
    printf '[tables."public.t1"]\ncolumns.name = "full_name"\n' >"$work/many-mask.toml"
    [ "$raised" = 0 ] || bench_tables_locks default
    for _ in $(seq "$runs"); do
        psql -X -q -d postgres -c "DROP DATABASE IF EXISTS r_many_pg" -c "CREATE DATABASE r_many_pg"
        read -r c _ < <(measure "pg_restore -j2" pg_restore -j2 -d r_many_pg "$work/many.dump")
        psql -X -q -d postgres -c "DROP DATABASE IF EXISTS r_many_weir"
        read -r d _ < <(measure "weir-load -j2 --create" sh -c "'$bin/weir-load' -q -j2 --create r_many_weir < '$work/many.weir'")
        read -r a _ < <(measure "weir-inspect --verify" "$bin/weir-inspect" --verify "$work/many.weir")
        read -r b _ < <(measure "weir-mask (one table ruled)" "$bin/weir-mask" -c "$work/many-mask.toml" "$work/many.weir")
        load_pg+=("$c"); load_w+=("$d"); v+=("$a"); m+=("$b")
        [ "$raised" = 0 ] || bench_tables_locks 256
        rm -rf "$work/many.dump2"
        read -r a _ < <(measure "pg_dump -Fd -j2 -Z0" pg_dump -Fd -j2 -Z0 -f "$work/many.dump2" "$db")
        read -r b _ < <(measure "weir-extract -j2" sh -c "'$bin/weir-extract' -q -j2 $db > /dev/null")
        read -r c _ < <(measure "weir-extract --subset" sh -c "'$bin/weir-extract' -q -j2 --subset 'public.t1:id < 5' $db > /dev/null")
        [ "$raised" = 0 ] || bench_tables_locks default
        ext_pg+=("$a"); ext_w+=("$b"); s+=("$c")
    done
    psql -X -q -d postgres -c "DROP DATABASE r_many_pg" -c "DROP DATABASE r_many_weir" -c "DROP DATABASE $db"
    rm -rf "$work/many.dump" "$work/many.dump2" "$work/many.weir"
    ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
    {
        printf '  %-26s weir %s s, pg_dump -Fd -j2 -Z0 %s s: %sx (target <= 1.0)%s\n' "extract, $n tables" \
            "$(best "${ext_w[@]}")" "$(best "${ext_pg[@]}")" "$(ratio "$(best "${ext_w[@]}")" "$(best "${ext_pg[@]}")")" \
            "$([ "$raised" = 0 ] || echo ", max_locks_per_transaction 256")"
        printf '  %-26s weir %s s, pg_restore -j2 %s s: %sx (target <= 1.0)\n' "load, $n tables" \
            "$(best "${load_w[@]}")" "$(best "${load_pg[@]}")" "$(ratio "$(best "${load_w[@]}")" "$(best "${load_pg[@]}")")"
        printf '  %-26s inspect --verify %s s, mask %s s, extract --subset %s s\n' "other stages, $n tables" \
            "$(best "${v[@]}")" "$(best "${m[@]}")" "$(best "${s[@]}")"
    } >>"$work/stages"
}

bench_tables() {
    local n
    for n in ${BENCH_TABLES:-5000}; do
        bench_tables_one "$n"
    done
}
