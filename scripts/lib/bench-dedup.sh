# shellcheck shell=bash
# The deduplicated repository pairs of scripts/bench.sh (issue 33), on a copy of the bench data:
#
#   BENCH_DEDUP_DAYS days (default 30) of daily backups: each day after the first updates 1% of
#   the rows, inserts 0.5% and deletes 0.2% (scripts/lib/bench-dedup.sql), extracts the
#   database to a file once, and backs that file up twice:
#     weir-dedup push DIR             against  restic backup --stdin (a local repository)
#   reporting the bytes each repository holds after the first day and the last, the time per
#   day, and the plain pipeline's cost (weir-compress | weir-encrypt of each day's archive,
#   stored whole, as backup.sh stores it);
#   a first (full) push against weir-compress | weir-encrypt | weir-put, and
#   weir-dedup cat against weir-get | weir-encrypt -d | weir-compress -d, on day 1's archive,
#   in throughput.
#
# Sourced by bench.sh: uses $bin, $work, $runs, $gb, $recipient, measure, best and the scratch
# cluster (the database bench must exist).
# shellcheck disable=SC2154 # work, runs, gb, recipient and bin come from bench.sh.

# Bytes of the rows the transactions after txid START wrote (inserted, or the new versions of
# updated rows), every table's as COPY text through zstd -3 on its own: the least a backup
# that stores each new row once, compressed, can add for the day.
rows_written() {
    local db=$1 start=$2 t total=0
    for t in $(psql -X -Atq -d "$db" -c "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"); do
        total=$((total + $(psql -X -q -d "$db" -c "COPY (SELECT * FROM $t WHERE xmin::text::bigint > $start) TO STDOUT" | zstd -3 -q -c | wc -c)))
    done
    echo "$total"
}

bench_dedup() {
    local days=${BENCH_DEDUP_DAYS:-30} d a b
    local repo=$work/dedup restic_repo=$work/restic day=$work/day.weir
    local -a wt=() rt=()
    mkdir -p "$repo"
    head -c 32 /dev/urandom | base64 > "$work/dedup.key"
    export RESTIC_PASSWORD=bench-restic
    restic init -q --repo "$restic_repo" >/dev/null
    psql -X -q -d postgres -c 'DROP DATABASE IF EXISTS dd' -c 'CREATE DATABASE dd TEMPLATE bench'
    echo "== weir-dedup against restic: $days daily backups ($(restic version | cut -d' ' -f1-2))"
    local plain=0 first_w first_r first_plain written=0
    for d in $(seq "$days"); do
        if [ "$d" != 1 ]; then
            local start
            start=$(psql -X -Atq -d dd -c 'SELECT txid_current() % 4294967296')
            psql -X -q -v ON_ERROR_STOP=1 -v n="$gb" -v d="$d" -d dd -f scripts/lib/bench-dedup.sql
            written=$((written + $(rows_written dd "$start")))
        fi
        "$bin/weir-extract" -q -j2 -f "$day" dd
        read -r a _ < <(measure "day $d: weir-dedup push" sh -c \
            "'$bin/weir-dedup' push -q '$repo' dd -r '$recipient' --key-file '$work/dedup.key' < '$day'")
        read -r b _ < <(measure "day $d: restic backup --stdin" sh -c \
            "restic backup -q --repo '$restic_repo' --stdin --stdin-filename dd.weir < '$day'")
        wt+=("$a"); rt+=("$b")
        plain=$((plain + $("$bin/weir-compress" < "$day" | "$bin/weir-encrypt" -r "$recipient" | wc -c)))
        if [ "$d" = 1 ]; then
            first_w=$(du -sb "$repo" | cut -f1); first_r=$(du -sb "$restic_repo" | cut -f1); first_plain=$plain
            cp "$day" "$work/day1.weir"
        fi
    done
    local last_w last_r
    last_w=$(du -sb "$repo" | cut -f1); last_r=$(du -sb "$restic_repo" | cut -f1)
    local mean_w mean_r
    mean_w=$(python3 -c "import sys; v=[float(x) for x in sys.argv[2:]]; print(f'{sum(v)/len(v):.2f}')" x "${wt[@]:1}")
    mean_r=$(python3 -c "import sys; v=[float(x) for x in sys.argv[2:]]; print(f'{sum(v)/len(v):.2f}')" x "${rt[@]:1}")
    mb() { python3 -c "print(f'{$1/1e6:,.1f} MB')"; }
    {
        printf '  %-26s weir-dedup %s after day 1, %s after day %s (%sx one full compressed backup, target <= 1.3); restic %s, %s: %sx restic stored (target <= 1.0); plain pipeline %s: weir %sx plain\n' \
            "dedup, $days days" "$(mb "$first_w")" "$(mb "$last_w")" "$days" \
            "$(python3 -c "print(f'{$last_w/$first_plain:.2f}')")" "$(mb "$first_r")" "$(mb "$last_r")" \
            "$(python3 -c "print(f'{$last_w/$last_r:.2f}')")" "$(mb "$plain")" "$(python3 -c "print(f'{$last_w/$plain:.3f}')")"
        printf '  %-26s the rows the days wrote (new and updated), compressed per table and day: %s; one full backup plus that is %sx one full: what storing each new row once would cost\n' \
            "dedup, floor" "$(mb "$written")" "$(python3 -c "print(f'{($first_plain+$written)/$first_plain:.2f}')")"
        printf '  %-26s weir-dedup %s s a day after the first, restic %s s: %sx time (target <= 1.0); day 1: weir %s s, restic %s s\n' \
            "dedup, time per day" "$mean_w" "$mean_r" "$(python3 -c "print(f'{$mean_w/$mean_r:.2f}')")" "${wt[0]}" "${rt[0]}"
    } >> "$work/stages"

    # Keeping the last week: weir-prune alone (whole packs), then with --repack (partly used
    # packs rewritten), against restic forget --prune (which repacks too).
    local keep=$((days > 14 ? 7 : (days + 1) / 2)) pruned_w repacked_w pruned_r
    read -r a _ < <(measure "weir-prune --keep-last $keep" "$bin/weir-prune" -q "$repo" --keep-last "$keep")
    pruned_w=$(du -sb "$repo" | cut -f1)
    read -r b _ < <(measure "weir-prune --repack" "$bin/weir-prune" -q "$repo" --keep-last "$keep" \
        --repack -i "$work/key.txt" -r "$recipient")
    repacked_w=$(du -sb "$repo" | cut -f1)
    local -a restic_t
    read -r -a restic_t < <(measure "restic forget --prune" restic forget -q --repo "$restic_repo" \
        --keep-last "$keep" --prune)
    pruned_r=$(du -sb "$restic_repo" | cut -f1)
    printf '  %-26s weir-prune %s (%s s), with --repack %s (%s s more); restic forget --prune %s (%s s): %sx restic stored, %sx time\n' \
        "dedup, last $keep kept" "$(mb "$pruned_w")" "$a" "$(mb "$repacked_w")" "$b" "$(mb "$pruned_r")" \
        "${restic_t[0]}" "$(python3 -c "print(f'{$repacked_w/$pruned_r:.2f}')")" \
        "$(python3 -c "print(f'{($a+$b)/${restic_t[0]}:.2f}')")" >> "$work/stages"

    # A full push and a cat against the plain pipelines, on day 1's archive, in a directory.
    local full=$work/dedup-full plainrepo=$work/plain-objects
    mkdir -p "$plainrepo"
    local -a pw=() pp=() cw=() cp=()
    for _ in $(seq "$runs"); do
        rm -rf "$full"; mkdir -p "$full"
        read -r a _ < <(measure "weir-dedup push (full)" sh -c \
            "'$bin/weir-dedup' push -q '$full' dd -r '$recipient' --key-file '$work/dedup.key' < '$work/day1.weir'")
        read -r b _ < <(measure "compress | encrypt | put" sh -c \
            "'$bin/weir-compress' < '$work/day1.weir' | '$bin/weir-encrypt' -r '$recipient' | '$bin/weir-put' -q '$plainrepo/day1.weir.zst.age'")
        pw+=("$a"); pp+=("$b")
        read -r a _ < <(measure "weir-dedup cat" sh -c "'$bin/weir-dedup' cat '$full' dd -i '$work/key.txt' > /dev/null")
        read -r b _ < <(measure "get | decrypt | decompress" sh -c \
            "'$bin/weir-get' -q '$plainrepo/day1.weir.zst.age' | '$bin/weir-encrypt' -d -i '$work/key.txt' | '$bin/weir-compress' -d > /dev/null")
        cw+=("$a"); cp+=("$b")
        rm -f "$plainrepo/day1.weir.zst.age"
    done
    {
        printf '  %-26s %s s against %s s: %sx throughput (target >= 0.9)\n' "dedup push, full backup" \
            "$(best "${pw[@]}")" "$(best "${pp[@]}")" "$(python3 -c "print(f'{$(best "${pp[@]}")/$(best "${pw[@]}"):.2f}')")"
        printf '  %-26s %s s against %s s: %sx throughput (target >= 1.0)\n' "dedup cat" \
            "$(best "${cw[@]}")" "$(best "${cp[@]}")" "$(python3 -c "print(f'{$(best "${cp[@]}")/$(best "${cw[@]}"):.2f}')")"
    } >> "$work/stages"
    psql -X -q -d postgres -c 'DROP DATABASE dd'
    rm -rf "$repo" "$restic_repo" "$full" "$plainrepo" "$day" "$work/day1.weir"
}
