# shellcheck shell=bash
# The change-data-capture pairs of scripts/bench.sh (issue 16), over the same WAL:
#
#   weir-cdc -E END > /dev/null       against  pg_recvlogical -P wal2json (format-version 2;
#                                              Debian's 2.5 has no numeric-data-types-as-string)
#                                              and pg_recvlogical -P test_decoding
#   weir-cdc --confirm-from | weir-apply   against  a native subscription (CREATE SUBSCRIPTION
#                                              into another database of the same server)
#   weir-cdc --copy -j 2 | weir-apply      against  a subscription's initial copy (copy_data),
#                                              until every table is synchronized
#   weir-cdc | weir-mask | weir-apply      against  weir-cdc | weir-apply (inserts; three keyed
#                                              rules), and weir-mask alone on the saved stream
#   one transaction of BENCH_CDC_BIG_ROWS inserts (default 10,000,000) through
#   weir-cdc | weir-apply with protocol 2 (streamed while in progress) and with protocol 1,
#   against a native subscription with streaming = on: time, peak RSS (the largest stage's),
#   and what the server spilled to pg_replslot or streamed (pg_stat_replication_slots)
#   weir-sink to files (both formats), a local webhook (Python's http.server, one POST a
#   transaction) and NATS JetStream (nats-server -js), each from the saved stream, in lines/s
#   next to weir-cdc's own rate writing that stream to a file
#
# on an insert-heavy workload (BENCH_CDC_ROWS rows, default 1,000,000, in transactions of
# 10,000) and an update-heavy one (every row updated once, same transactions). Each run reads
# from a slot of its own, created before the workload, so every run decodes the same WAL.
# The server is switched to wal_level = logical for this pair and back after. Reports rows/s,
# WAL MB/s, client CPU and peak RSS, and the ratios.
# Sourced by bench.sh: uses $bin, $work, $runs, measure, best and the scratch cluster.
# shellcheck disable=SC2154 # work, runs and bin come from bench.sh.

per_s() { python3 -c "print(f'{$1/$2:,.0f}')"; }

bench_cdc_wal_level() { # logical | replica
    psql -X -q -d postgres -c "ALTER SYSTEM SET wal_level = $1"
    # Six slots a run (three readers, two pipelines, the copy's subscription) and their
    # walsenders; the default of 10 slots does not hold two runs.
    if [ "$1" = logical ]; then
        psql -X -q -d postgres -c "ALTER SYSTEM SET max_replication_slots = 64" -c "ALTER SYSTEM SET max_wal_senders = 64"
    else
        psql -X -q -d postgres -c "ALTER SYSTEM RESET max_replication_slots" -c "ALTER SYSTEM RESET max_wal_senders"
    fi
    scratch_pg_restart
}

bench_cdc_slots() { # KIND: one slot per run and tool, at the current WAL position
    local kind=$1 i
    for i in $(seq "$runs"); do
        "$bin/weir-cdc" -q -d cdcb -S "w_${kind}_$i" --create-slot
        pg_recvlogical -d cdcb -S "j_${kind}_$i" -P wal2json --create-slot
        pg_recvlogical -d cdcb -S "t_${kind}_$i" -P test_decoding --create-slot
        psql -X -q -d cdcb -c "SELECT pg_create_logical_replication_slot('s_${kind}_$i', 'pgoutput')" >/dev/null
    done
}

bench_cdc_target() { # DB: an empty copy of the table
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"
    psql -X -q -d "$1" -c "CREATE TABLE ev (id bigint PRIMARY KEY, kind text, payload text, at timestamptz, n numeric)"
}

# Waits until slot $1 has confirmed $2; prints nothing. For the native subscription, whose
# apply worker confirms what it committed.
bench_cdc_wait() {
    until [ "$(psql -X -A -t -d postgres -c "SELECT confirmed_flush_lsn >= '$2' FROM pg_replication_slots WHERE slot_name = '$1'")" = t ]; do
        sleep 0.05
    done
}

bench_cdc_native() { # KIND I END: the subscription's catch-up, measured from enabling it
    local sub="sub_$1_$2"
    bench_cdc_target "sub_$1_$2"
    psql -X -q -d "sub_$1_$2" -c "CREATE SUBSCRIPTION $sub CONNECTION 'host=$PGHOST port=$PGPORT user=postgres dbname=cdcb' PUBLICATION cdcp WITH (create_slot = false, slot_name = 's_$1_$2', copy_data = false, enabled = false)"
    if [ "$1" = upd ]; then
        # The updates need the rows: the insert run's result, loaded before.
        pg_dump -a -t ev cdcb_before | psql -X -q -d "sub_$1_$2" >/dev/null
    fi
    measure "native subscription" bash -c "psql -X -q -d sub_$1_$2 -c 'ALTER SUBSCRIPTION $sub ENABLE' && . scripts/lib/bench-cdc.sh && bench_cdc_wait s_$1_$2 $3"
    psql -X -q -d "sub_$1_$2" -c "ALTER SUBSCRIPTION $sub DISABLE" -c "ALTER SUBSCRIPTION $sub SET (slot_name = NONE)" -c "DROP SUBSCRIPTION $sub"
    # The apply worker lets the slot go a moment after DISABLE.
    until [ "$(psql -X -A -t -d postgres -c "SELECT active FROM pg_replication_slots WHERE slot_name = 's_$1_$2'")" = f ]; do
        sleep 0.05
    done
    psql -X -q -d postgres -c "DROP DATABASE sub_$1_$2"
}

bench_cdc_one() { # KIND (ins | upd) END START ROWS
    local kind=$1 end=$2 start=$3 rows=$4 i a b c d w=() j=() t=() ap=() nat=() wkb=() jkb=() masked=()
    for i in $(seq "$runs"); do
        read -r a b < <(measure "weir-cdc ($kind)" sh -c "'$bin/weir-cdc' -q -d cdcb -S w_${kind}_$i --publication cdcp --stream -E $end > /dev/null")
        w+=("$a"); wkb+=("$b")
        read -r a b < <(measure "pg_recvlogical wal2json" pg_recvlogical --no-loop -d cdcb -S "j_${kind}_$i" --start -E "$end" -f /dev/null \
            -o format-version=2 -o include-xids=1 -o include-timestamp=1 -o include-lsn=1)
        j+=("$a"); jkb+=("$b")
        read -r a _ < <(measure "pg_recvlogical test_decoding" pg_recvlogical --no-loop -d cdcb -S "t_${kind}_$i" --start -E "$end" -f /dev/null)
        t+=("$a")
    done
    # The apply pair, once per run: weir's pipeline into one target, the subscription into another.
    for i in $(seq "$runs"); do
        bench_cdc_target "app_${kind}_$i"
        [ "$kind" = ins ] || pg_dump -a -t ev cdcb_before | psql -X -q -d "app_${kind}_$i" >/dev/null
        read -r c _ < <(measure "weir-cdc | weir-apply" sh -c "'$bin/weir-cdc' -q -d cdcb -S w2_${kind}_$i --publication cdcp --stream -E $end --confirm-from dbname=app_${kind}_$i --origin o_$i | '$bin/weir-apply' -q -d app_${kind}_$i --origin o_$i")
        ap+=("$c")
        if [ "$kind" = ins ]; then
            bench_cdc_target "mask_$i"
            read -r c _ < <(measure "weir-cdc | weir-mask | weir-apply" sh -c "'$bin/weir-cdc' -q -d cdcb -S w3_ins_$i --publication cdcp --stream -E $end --confirm-from dbname=mask_$i --origin om_$i | WEIR_MASK_KEY=bench '$bin/weir-mask' -c '$work/cdc-mask.toml' --schema-from '$work/cdc-schema.weir' | '$bin/weir-apply' -q -d mask_$i --origin om_$i")
            masked+=("$c")
            psql -X -q -d postgres -c "DROP DATABASE mask_$i" -c "SELECT pg_replication_origin_drop('om_$i')" >/dev/null
        fi
        read -r d _ < <(bench_cdc_native "$kind" "$i" "$end")
        nat+=("$d")
        psql -X -q -d postgres -c "DROP DATABASE app_${kind}_$i" -c "SELECT pg_replication_origin_drop('o_$i')" >/dev/null
    done
    local mb
    mb=$(psql -X -A -t -d postgres -c "SELECT round(('$end'::pg_lsn - '$start'::pg_lsn) / 1e6, 1)")
    {
        printf '  %-26s %s rows, %s MB of WAL: weir-cdc %s s (%s rows/s, %s MB/s, %s KiB), wal2json %s s (%s KiB): %sx wal2json'"'"'s speed (target >= 1.0); test_decoding %s s\n' \
            "cdc decode, $kind" "$rows" "$mb" "$(best "${w[@]}")" "$(per_s "$rows" "$(best "${w[@]}")")" "$(ratio "$mb" "$(best "${w[@]}")")" \
            "$(maxi "${wkb[@]}")" "$(best "${j[@]}")" "$(maxi "${jkb[@]}")" "$(ratio "$(best "${j[@]}")" "$(best "${w[@]}")")" "$(best "${t[@]}")"
        printf '  %-26s weir-cdc | weir-apply %s s, native subscription %s s: %sx its speed (target >= 1.0 on inserts)\n' \
            "cdc apply, $kind" "$(best "${ap[@]}")" "$(best "${nat[@]}")" "$(ratio "$(best "${nat[@]}")" "$(best "${ap[@]}")")"
        if [ "$kind" = ins ]; then
            printf '  %-26s weir-cdc | weir-mask | weir-apply %s s: %sx the time without weir-mask (target <= 1.15)\n' \
                "cdc masked apply, $kind" "$(best "${masked[@]}")" "$(ratio "$(best "${masked[@]}")" "$(best "${ap[@]}")")"
        fi
    } >>"$work/stages"
}

# weir-mask alone over the insert workload's stream, saved to a file first: MB/s of JSON lines;
# then the sinks over the same file.
bench_cdc_mask_alone() { # END
    local i a m=() mb
    read -r a _ < <(measure "weir-cdc -o FILE" "$bin/weir-cdc" -q -d cdcb -S w3_mask --publication cdcp --stream -E "$1" -o "$work/cdc-ins.jsonl")
    mb=$(python3 -c "import os; print(round(os.path.getsize('$work/cdc-ins.jsonl') / 1e6, 1))")
    for i in $(seq "$runs"); do
        read -r a _ < <(measure "weir-mask (stream)" sh -c "WEIR_MASK_KEY=bench '$bin/weir-mask' -c '$work/cdc-mask.toml' --schema-from '$work/cdc-schema.weir' < '$work/cdc-ins.jsonl' > /dev/null")
        m+=("$a")
    done
    printf '  %-26s %s MB of JSON lines in %s s: %s MB/s (target >= 100)\n' "cdc weir-mask alone" "$mb" \
        "$(best "${m[@]}")" "$(python3 -c "print(round($mb / $(best "${m[@]}")))")" >>"$work/stages"
    bench_cdc_sinks "$a"
    rm -f "$work/cdc-ins.jsonl"
}

# A webhook receiver for the sink pair: answers 200 to every POST after reading its body.
bench_cdc_hook() { # PORT
    python3 - "$1" >/dev/null 2>&1 <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
    echo $!
}

# weir-sink over the saved insert stream, each target in lines/s; $1 is weir-cdc's time to
# write that stream to a file (the raw stream's rate).
bench_cdc_sinks() { # CDC_SECS
    local lines f d h n port pid nats="" line
    lines=$(wc -l <"$work/cdc-ins.jsonl")
    read -r f _ < <(measure "weir-sink file://" "$bin/weir-sink" -q -f "$work/cdc-ins.jsonl" "file://$work/sink-f")
    read -r d _ < <(measure "weir-sink --format debezium" "$bin/weir-sink" -q --format debezium -f "$work/cdc-ins.jsonl" "file://$work/sink-d")
    rm -rf "$work/sink-f" "$work/sink-d"
    port=$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
    pid=$(bench_cdc_hook "$port")
    until curl -s -o /dev/null -X POST -H 'content-length: 0' "http://127.0.0.1:$port/"; do sleep 0.05; done
    read -r h _ < <(measure "weir-sink http:// (webhook)" "$bin/weir-sink" -q -f "$work/cdc-ins.jsonl" "http://127.0.0.1:$port/hook")
    kill "$pid"
    line="weir-cdc $(per_s "$lines" "$1"); files $(per_s "$lines" "$f"), debezium files $(per_s "$lines" "$d"), webhook $(per_s "$lines" "$h")"
    if command -v nats-server >/dev/null 2>&1; then
        port=$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
        nats-server -js -a 127.0.0.1 -p "$port" -sd "$work/nats" >/dev/null 2>&1 &
        pid=$!
        until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.05; done
        read -r n _ < <(measure "weir-sink nats://" "$bin/weir-sink" -q -f "$work/cdc-ins.jsonl" "nats://127.0.0.1:$port/bench?stream=BENCH")
        kill "$pid"; wait "$pid" 2>/dev/null || true
        rm -rf "$work/nats"
        nats=", NATS JetStream $(per_s "$lines" "$n")"
    fi
    printf '  %-26s %s lines, lines/s: %s%s\n' "cdc sinks" "$lines" "$line" "$nats" >>"$work/stages"
}

# The initial copy of the table as the workloads left it: weir's copy into one target, the
# subscription's copy_data into another, each from a slot of its own. The subscription counts
# until its table sync is done (state s or r in pg_subscription_rel).
bench_cdc_copy() { # ROWS
    local i a b w=() nat=() wkb=()
    for i in $(seq "$runs"); do
        bench_cdc_target "cpw_$i"
        read -r a b < <(measure "weir-cdc --copy | weir-apply" sh -c "'$bin/weir-cdc' -q -d cdcb -S cw_$i --publication cdcp --copy -j 2 --confirm-from dbname=cpw_$i --origin oc_$i | '$bin/weir-apply' -q -d cpw_$i --origin oc_$i")
        w+=("$a"); wkb+=("$b")
        bench_cdc_target "cpn_$i"
        psql -X -q -d cdcb -c "SELECT pg_create_logical_replication_slot('cn_$i', 'pgoutput')" >/dev/null
        read -r a _ < <(measure "subscription copy_data" bash -c "psql -X -q -d cpn_$i -c \"CREATE SUBSCRIPTION cpn_$i CONNECTION 'host=$PGHOST port=$PGPORT user=postgres dbname=cdcb' PUBLICATION cdcp WITH (create_slot = false, slot_name = 'cn_$i', copy_data = true)\" && until [ \"\$(psql -X -A -t -d cpn_$i -c \"SELECT count(*) FROM pg_subscription_rel WHERE srsubstate NOT IN ('s', 'r')\")\" = 0 ]; do sleep 0.05; done")
        nat+=("$a")
        [ "$(psql -X -A -t -d "cpw_$i" -c "SELECT count(*) FROM ev")" = "$1" ] || { echo "weir's copy has the wrong row count" >&2; exit 1; }
        psql -X -q -d "cpn_$i" -c "ALTER SUBSCRIPTION cpn_$i DISABLE" -c "ALTER SUBSCRIPTION cpn_$i SET (slot_name = NONE)" -c "DROP SUBSCRIPTION cpn_$i"
        until [ "$(psql -X -A -t -d postgres -c "SELECT active FROM pg_replication_slots WHERE slot_name = 'cn_$i'")" = f ]; do
            sleep 0.05
        done
        psql -X -q -d postgres -c "DROP DATABASE cpw_$i" -c "DROP DATABASE cpn_$i" -c "SELECT pg_replication_origin_drop('oc_$i')" >/dev/null
    done
    printf '  %-26s %s rows: weir-cdc --copy -j 2 | weir-apply %s s (%s KiB), subscription copy_data %s s: %sx its time (target <= 0.5)\n' \
        "cdc initial copy" "$1" "$(best "${w[@]}")" "$(maxi "${wkb[@]}")" "$(best "${nat[@]}")" \
        "$(python3 -c "print(f'{$(best "${w[@]}")/$(best "${nat[@]}"):.2f}')")" >>"$work/stages"
}

# --backfill of the whole table into an empty copy while nothing else changes (timed until the
# copy holds every row; the stream runs on until stopped, so it is stopped then), against the
# copy from an exported snapshot; then --verify of the two, against reading both tables once
# in key order with COPY (what any check of every row must do at least).
bench_cdc_backfill_verify() { # ROWS
    local i a b bf=() bkb=() vf=() vkb=() rd=()
    for i in $(seq "$runs"); do
        bench_cdc_target "bfw_$i"
        "$bin/weir-cdc" -q -d cdcb -S "bf_$i" --create-slot
        # Job control gives the pipeline a process group of its own, stopped whole at the end.
        read -r a b < <(measure "weir-cdc --backfill | weir-apply" bash -c "set -m
            '$bin/weir-cdc' -q -d cdcb -S bf_$i --publication cdcp --stream --backfill ev --confirm-from dbname=bfw_$i --origin obf_$i \
              | '$bin/weir-apply' -q -d bfw_$i --origin obf_$i &
            until [ \"\$(psql -X -A -t -d bfw_$i -c 'SELECT count(*) FROM ev')\" = $1 ]; do sleep 0.05; done
            kill -- -\$(jobs -p); wait || true")
        bf+=("$a"); bkb+=("$b")
        local end
        end=$(psql -X -A -t -d cdcb -c "SELECT pg_current_wal_lsn()")
        read -r a b < <(measure "weir-cdc --verify | weir-apply" sh -c "'$bin/weir-cdc' -q -d cdcb -S bf_$i --publication cdcp --stream --verify -j 2 -E $end --confirm-from dbname=bfw_$i --origin obf_$i | '$bin/weir-apply' -d bfw_$i --origin obf_$i -j 2 2>&1 | grep -q 'the target equals the source in 1 tables'")
        vf+=("$a"); vkb+=("$b")
        read -r a _ < <(measure "COPY of both, by key" sh -c "psql -X -q -d cdcb -c 'COPY (SELECT * FROM ev ORDER BY id) TO STDOUT' >/dev/null & psql -X -q -d bfw_$i -c 'COPY (SELECT * FROM ev ORDER BY id) TO STDOUT' >/dev/null; wait")
        rd+=("$a")
        "$bin/weir-cdc" -q -d cdcb -S "bf_$i" --drop-slot
        psql -X -q -d postgres -c "DROP DATABASE bfw_$i" -c "SELECT pg_replication_origin_drop('obf_$i')" >/dev/null
    done
    printf '  %-26s %s rows: weir-cdc --backfill | weir-apply %s s (%s KiB) (%s rows/s)\n' \
        "cdc backfill" "$1" "$(best "${bf[@]}")" "$(maxi "${bkb[@]}")" "$(per_s "$1" "$(best "${bf[@]}")")" >>"$work/stages"
    printf '  %-26s %s rows: weir-cdc --verify -j 2 | weir-apply -j 2 %s s (%s KiB), COPY of both sides by key %s s: %sx its time\n' \
        "cdc verify" "$1" "$(best "${vf[@]}")" "$(maxi "${vkb[@]}")" "$(best "${rd[@]}")" \
        "$(python3 -c "print(f'{$(best "${vf[@]}")/$(best "${rd[@]}"):.2f}')")" >>"$work/stages"
}

# The slot's spilled and streamed megabytes, as pg_stat_replication_slots counts them.
bench_cdc_spilled() { # SLOT
    psql -X -A -t -d cdcb -c "SELECT round(spill_bytes / 1e6) || ' MB spilled, ' || round(stream_bytes / 1e6) || ' MB streamed' FROM pg_stat_replication_slots WHERE slot_name = '$1'"
}

bench_cdc_big() { # ROWS
    local p a b t=() kb=() sp=() nat
    psql -X -q -d cdcb -c "CREATE TABLE big (id bigint PRIMARY KEY, pad text) WITH (autovacuum_enabled = off)" -c "ALTER PUBLICATION cdcp ADD TABLE big"
    for p in 2 1; do "$bin/weir-cdc" -q -d cdcb -S "big_$p" --create-slot; done
    psql -X -q -d cdcb -c "SELECT pg_create_logical_replication_slot('big_s', 'pgoutput')" >/dev/null
    psql -X -q -d cdcb -c "INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, $1) g"
    local end
    end=$(psql -X -A -t -d cdcb -c "SELECT pg_current_wal_lsn()")
    for p in 2 1; do
        psql -X -q -d postgres -c "DROP DATABASE IF EXISTS big_$p" -c "CREATE DATABASE big_$p"
        psql -X -q -d "big_$p" -c "CREATE TABLE big (id bigint PRIMARY KEY, pad text)" -c "CREATE TABLE ev (id bigint PRIMARY KEY, kind text, payload text, at timestamptz, n numeric)"
        read -r a b < <(measure "weir-cdc | weir-apply (proto $p)" sh -c "'$bin/weir-cdc' -q -d cdcb -S big_$p --publication cdcp --stream --proto-version $p -E $end --confirm-from dbname=big_$p --origin ob_$p | '$bin/weir-apply' -q -d big_$p --origin ob_$p")
        t+=("$a"); kb+=("$b"); sp+=("$(bench_cdc_spilled "big_$p")")
        [ "$(psql -X -A -t -d "big_$p" -c "SELECT count(*) FROM big")" = "$1" ] || { echo "protocol $p: wrong row count" >&2; exit 1; }
        psql -X -q -d postgres -c "DROP DATABASE big_$p" -c "SELECT pg_replication_origin_drop('ob_$p')" >/dev/null
    done
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS big_n" -c "CREATE DATABASE big_n"
    psql -X -q -d big_n -c "CREATE TABLE big (id bigint PRIMARY KEY, pad text)" -c "CREATE TABLE ev (id bigint PRIMARY KEY, kind text, payload text, at timestamptz, n numeric)" \
        -c "CREATE SUBSCRIPTION big_n CONNECTION 'host=$PGHOST port=$PGPORT user=postgres dbname=cdcb' PUBLICATION cdcp WITH (create_slot = false, slot_name = 'big_s', copy_data = false, enabled = false, streaming = on)"
    read -r nat _ < <(measure "native subscription (streaming = on)" bash -c "psql -X -q -d big_n -c 'ALTER SUBSCRIPTION big_n ENABLE' && . scripts/lib/bench-cdc.sh && bench_cdc_wait big_s $end")
    local nsp
    nsp=$(bench_cdc_spilled big_s)
    psql -X -q -d big_n -c "ALTER SUBSCRIPTION big_n DISABLE" -c "ALTER SUBSCRIPTION big_n SET (slot_name = NONE)" -c "DROP SUBSCRIPTION big_n"
    until [ "$(psql -X -A -t -d postgres -c "SELECT active FROM pg_replication_slots WHERE slot_name = 'big_s'")" = f ]; do sleep 0.05; done
    psql -X -q -d postgres -c "DROP DATABASE big_n"
    printf '  %-26s %s rows in one transaction: protocol 2 %s s (%s KiB, %s), protocol 1 %s s (%s KiB, %s), native streaming=on %s s (%s): %sx its time\n' \
        "cdc big transaction" "$1" "${t[0]}" "${kb[0]}" "${sp[0]}" "${t[1]}" "${kb[1]}" "${sp[1]}" "$nat" "$nsp" "$(ratio "${t[0]}" "$nat")" >>"$work/stages"
}

bench_cdc() {
    local n=${BENCH_CDC_ROWS:-1000000} start mid end i
    echo "== change data capture: $n rows inserted, then updated, $runs runs each"
    bench_cdc_wal_level logical
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS cdcb" -c "CREATE DATABASE cdcb"
    # No autovacuum on the table: a vacuum of the updated rows would land in one run and not another.
    psql -X -q -d cdcb -c "CREATE TABLE ev (id bigint PRIMARY KEY, kind text, payload text, at timestamptz, n numeric) WITH (autovacuum_enabled = off)" \
        -c "CREATE PUBLICATION cdcp FOR TABLE ev"
    bench_cdc_slots ins
    for i in $(seq "$runs"); do
        "$bin/weir-cdc" -q -d cdcb -S "w2_ins_$i" --create-slot
        "$bin/weir-cdc" -q -d cdcb -S "w3_ins_$i" --create-slot
    done
    "$bin/weir-cdc" -q -d cdcb -S w3_mask --create-slot
    # weir-mask's pair: three keyed rules, compiled against a schema-only archive.
    "$bin/weir-extract" -q -s cdcb >"$work/cdc-schema.weir"
    printf '%s\n' '[tables."public.ev"]' 'columns.id = "permute"' 'columns.kind = "full_name"' \
        'columns.payload = { type = "hash", length = 32 }' >"$work/cdc-mask.toml"
    start=$(psql -X -A -t -d cdcb -c "SELECT pg_current_wal_lsn()")
    psql -X -q -d cdcb <<SQL
DO \$\$ BEGIN FOR b IN 0..$((n / 10000 - 1)) LOOP
  INSERT INTO ev SELECT g, 'kind ' || (g % 7), md5(g::text) || md5((g + 1)::text), now(), g * 1.5
    FROM generate_series(b * 10000 + 1, b * 10000 + 10000) g;
  COMMIT;
END LOOP; END \$\$;
SQL
    mid=$(psql -X -A -t -d cdcb -c "SELECT pg_current_wal_lsn()")
    psql -X -q -d postgres -c "CREATE DATABASE cdcb_before TEMPLATE cdcb" 2>/dev/null ||
        { pg_dump cdcb | { psql -X -q -d postgres -c "CREATE DATABASE cdcb_before" && psql -X -q -d cdcb_before; }; }
    bench_cdc_slots upd
    for i in $(seq "$runs"); do "$bin/weir-cdc" -q -d cdcb -S "w2_upd_$i" --create-slot; done
    local mid2
    mid2=$(psql -X -A -t -d cdcb -c "SELECT pg_current_wal_lsn()")
    psql -X -q -d cdcb <<SQL
DO \$\$ BEGIN FOR b IN 0..$((n / 10000 - 1)) LOOP
  UPDATE ev SET n = n + 1, kind = 'changed' WHERE id > b * 10000 AND id <= b * 10000 + 10000;
  COMMIT;
END LOOP; END \$\$;
SQL
    end=$(psql -X -A -t -d cdcb -c "SELECT pg_current_wal_lsn()")
    bench_cdc_one ins "$mid" "$start" "$n"
    bench_cdc_mask_alone "$mid"
    bench_cdc_one upd "$end" "$mid2" "$n"
    bench_cdc_copy "$n"
    bench_cdc_backfill_verify "$n"
    bench_cdc_big "${BENCH_CDC_BIG_ROWS:-10000000}"
    psql -X -A -t -d postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = 'cdcb'" >/dev/null
    psql -X -q -d postgres -c "DROP DATABASE cdcb" -c "DROP DATABASE cdcb_before"
    bench_cdc_wal_level replica
}
