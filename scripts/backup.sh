#!/usr/bin/env bash
# Backs up the databases of one PostgreSQL instance to S3-compatible storage or a local
# directory, catalogs each complete backup, thins old ones, and writes Prometheus metrics.
# Configured by environment variables only (docs/jobs.md); the
# names of postgres-backup-s3 work as they did there.
#
#   POSTGRES_HOST=db S3_BUCKET=backups PASSPHRASE=... scripts/backup.sh
#   SCHEDULE='0 3 * * *' scripts/backup.sh      # runs under weir-schedule until stopped
#
# Each database goes through one pipeline:
#   weir-extract | [weir-mask] | [weir-compress] | [weir-encrypt] | weir-put
# and enters the catalog (NAME.catalog.json, written last) only when every stage succeeded.
# With DEDUP=1 each goes into one deduplicated repository instead (DEDUP_REPO), where what
# earlier backups stored is not stored again:
#   weir-extract | [weir-mask] | weir-dedup push
# With BACKUP_MODE=physical the instance is backed up whole instead, as one base backup:
#   weir-basebackup --repo WAL_REPO | [weir-compress] | [weir-encrypt] | weir-put
# (the server archives its WAL to WAL_REPO itself, through weir-wal push).
# A failed database is reported with the stage that failed, its object is removed, the
# other databases still run, and the script exits non-zero.
set -uo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/weir-env.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/weir-env.sh"

# Under SCHEDULE, hand over to the scheduler, which runs this script again without it.
if [ -n "${SCHEDULE:-}" ] && [ "${WEIR_SCHEDULED:-}" != 1 ]; then
    export WEIR_SCHEDULED=1
    exec weir-schedule ${BACKUP_RUN_NOW:+--run-now} "$SCHEDULE" -- "${BASH_SOURCE[0]}"
fi

weir_env_setup || exit 2

compression=${COMPRESSION:-zstd}
case "$compression" in
    zstd | none) ;;
    *) die 2 "COMPRESSION=$compression: expected zstd or none" ;;
esac

encryption=none
encrypt_args=()
if [ -n "${PASSPHRASE:-}" ] && [ -n "${AGE_RECIPIENTS:-}${AGE_RECIPIENTS_FILE:-}" ]; then
    die 2 "PASSPHRASE and AGE_RECIPIENTS both set: age encrypts to a passphrase or to recipients, not both"
elif [ -n "${PASSPHRASE:-}" ]; then
    # The passphrase reaches weir-encrypt through its environment, never its argv.
    export WEIR_PASSPHRASE="$PASSPHRASE"
    encryption=age-passphrase
    encrypt_args=(--passphrase)
elif [ -n "${AGE_RECIPIENTS:-}${AGE_RECIPIENTS_FILE:-}" ]; then
    encryption=age
    for r in ${AGE_RECIPIENTS//,/ }; do encrypt_args+=(-r "$r"); done
    [ -n "${AGE_RECIPIENTS_FILE:-}" ] && encrypt_args+=(-R "$AGE_RECIPIENTS_FILE")
fi

mode=${BACKUP_MODE:-logical}
case "$mode" in
    logical) ;;
    physical)
        case ${BASEBACKUP_TYPE:-full} in
            full) ;;
            incr | diff) [ -n "${BASEBACKUP_PGDATA:-}" ] || die 2 "BASEBACKUP_TYPE=$BASEBACKUP_TYPE needs BASEBACKUP_PGDATA: incremental backups read the data directory" ;;
            *) die 2 "BASEBACKUP_TYPE=$BASEBACKUP_TYPE: expected full, incr or diff" ;;
        esac
        manifest_dir=${BASEBACKUP_MANIFEST_DIR:-${WEIR_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/var/lib/weir}/.cache}/weir}/manifests}
        [ -z "${MASK_RULES:-}" ] || die 2 "MASK_RULES applies to logical backups: a base backup is copied as the server's files"
        WAL_REPO=${WAL_REPO:-${WEIR_BASE}_wal}
        ;;
    *) die 2 "BACKUP_MODE=$mode: expected logical or physical" ;;
esac

dedup=${DEDUP:-0}
dedup_args=()
if [ "$dedup" = 1 ]; then
    [ "$mode" = logical ] || die 2 "DEDUP=1 is for logical backups; base backups go to their own place"
    [ "$encryption" != none ] || die 2 "DEDUP=1 needs AGE_RECIPIENTS, AGE_RECIPIENTS_FILE or PASSPHRASE: every chunk is encrypted"
    DEDUP_REPO=${DEDUP_REPO:-${WEIR_BASE}_dedup}
    # The repository key is a secret: from a file, or through weir-dedup's environment.
    if [ -n "${DEDUP_KEY_FILE:-}" ]; then
        dedup_args=(--key-file "$DEDUP_KEY_FILE")
    elif [ -n "${DEDUP_KEY:-}" ]; then
        export WEIR_DEDUP_KEY="$DEDUP_KEY"
    else
        die 2 "DEDUP=1 needs DEDUP_KEY or DEDUP_KEY_FILE: the repository's key names its chunks"
    fi
    case "$DEDUP_REPO" in
        s3://*) ;;
        *) mkdir -p "${DEDUP_REPO#file://}" || die 1 "cannot create $DEDUP_REPO" ;;
    esac
elif [ "$dedup" != 0 ]; then
    die 2 "DEDUP=$dedup: expected 0 or 1"
fi
# DEDUP_REPACK=1: retention also rewrites the packs it leaves partly needed (weir-prune
# --repack), which reads packs: with the passphrase, or with the identity restores use.
repack_args=()
case ${DEDUP_REPACK:-0} in
    0) ;;
    1)
        [ "$dedup" = 1 ] || die 2 "DEDUP_REPACK=1 is for DEDUP=1"
        if [ "$encryption" = age-passphrase ]; then
            repack_args=(--repack --passphrase)
        else
            [ -n "${AGE_IDENTITY_FILE:-}" ] || die 2 "DEDUP_REPACK=1 needs AGE_IDENTITY_FILE: rewriting packs reads them"
            repack_args=(--repack -i "$AGE_IDENTITY_FILE" "${encrypt_args[@]}")
        fi
        ;;
    *) die 2 "DEDUP_REPACK=$DEDUP_REPACK: expected 0 or 1" ;;
esac

mask_args=()
if [ -n "${MASK_RULES:-}" ]; then
    [ -r "$MASK_RULES" ] || die 2 "MASK_RULES=$MASK_RULES: cannot read the file"
    mask_args=(-c "$MASK_RULES")
    [ -n "${MASK_KEY_FILE:-}" ] && mask_args+=(--key-file "$MASK_KEY_FILE")
    [ -n "${MASK_KEY:-}" ] && export WEIR_MASK_KEY="$MASK_KEY"
fi

# PGDUMP_EXTRA_OPTS is split on spaces, as postgres-backup-s3 did; weir-extract takes
# pg_dump's selection options (-t, -T, -n, -N, --exclude-table-data) and its own.
read -r -a extract_args <<<"${PGDUMP_EXTRA_OPTS:-}"
[ -n "${EXTRACT_JOBS:-}" ] && extract_args+=(-j "$EXTRACT_JOBS")

suffix=.weir
[ "$compression" = zstd ] && suffix+=.zst
[ "$encryption" != none ] && suffix+=.age

work=$(mktemp -d "${TMPDIR:-/tmp}/weir-backup.XXXXXX")
trap 'rm -rf "$work"' EXIT
# A signal ends the run (weir-schedule sends it to every stage too; weir-put aborts its
# upload); these traps make that an exit, so the EXIT trap still cleans up.
trap 'exit 130' INT
trap 'exit 143' TERM

# The stages of one run, so a failure can be named. Each reads stdin and writes stdout.
stage_compress() {
    if [ "$compression" = zstd ]; then
        weir-compress --level "${COMPRESSION_LEVEL:-3}"
    else
        cat
    fi
}
stage_encrypt() {
    if [ "$encryption" != none ]; then weir-encrypt "${encrypt_args[@]}"; else cat; fi
}
stage_mask() {
    if [ ${#mask_args[@]} -gt 0 ]; then
        weir-mask "${mask_args[@]}" --stats "$work/mask.json"
    else
        cat
    fi
}

# Records the backup in the catalog (NAME.catalog.json, written by weir-catalog from the stats
# the stages left), last: its presence is what makes a backup part of the catalog. Prints the
# backup's SIZE ROWS TABLES for the metrics.
write_entry() {
    local url=$1 kind=$2 t0=$3 stats=$4
    local -a archive=()
    if [ "$kind" = physical ]; then
        archive=(--backup-stats "$stats")
    elif [ -n "$stats" ]; then
        archive=(--archive-stats "$stats")
    fi
    weir-catalog add --kind "$kind" --started "$t0" --object-stats "$work/put.json" \
        "${archive[@]}" --compression "$compression" --encryption "$encryption" \
        --source "${PGHOST:-local}:${PGPORT:-5432}" "$url"
}

# Ends one backup once its pipeline ran, weir-put its last stage: when every stage succeeded,
# the catalog entry; otherwise what weir-put stored is removed (a weir-put that failed stored
# nothing; with exit 5 the name was taken, by another run's backup, which must stay) and the
# failure is reported. Arguments: name, address, entry kind, start time, `date +%s.%N` at the
# start, the archive's stats file ("" for none), the stage names, then their exit statuses.
conclude() {
    local name=$1 url=$2 kind=$3 started=$4 t0=$5 stats=$6 stages=$7 stage size rows tables
    shift 7
    local -a codes=("$@")
    stage=$(failed_stage "$stages" "${codes[@]}")
    if [ -z "$stage" ] && ! read -r size rows tables < <(write_entry "$url" "$kind" "$t0" "$stats"); then
        stage="catalog entry"
    fi
    if [ -n "$stage" ]; then
        [ "${codes[-1]}" = 0 ] && weir-rm -q -f "$url" >/dev/null 2>&1
        fail_db "$name" "$stage" "$started" "$(elapsed "$t0")"
        return 1
    fi
    ok_db "$name" "$started" "$(elapsed "$t0")" "$size" "$rows" "$tables"
    log "$name: done in $(elapsed "$t0") s, $size bytes"
}

# Sets the caller's t0 (the start, with nanoseconds, for the duration), started (whole
# seconds, for the catalog) and stamp (the object names' UTC time), and clears the stats files.
begin_run() {
    t0=$(date +%s.%N)
    started=${t0%.*}
    stamp=$(date -u -d "@$started" +%Y%m%dT%H%M%SZ)
    rm -f "$work"/*.json
}

# Pushes one stream into the deduplicated repository as backup NAME: the pipeline's first
# stage is given as a command, then its name for reports. Records the metrics, the bytes the
# push added among them; returns non-zero (and says why) if any stage failed.
push_dedup() {
    local label=$1 name=$2 first=$3 started stamp t0 stage size rows tables
    shift 3
    begin_run
    log "$label: pushing to $DEDUP_REPO as $name"
    "$@" | stage_mask | weir-dedup push -q "$DEDUP_REPO" "$name" "${encrypt_args[@]}"         "${dedup_args[@]}" --stats "$work/push.json"
    local -a codes=("${PIPESTATUS[@]}")
    stage=$(failed_stage "$first weir-mask weir-dedup" "${codes[@]}")
    if [ -n "$stage" ]; then
        fail_db "$label" "$stage" "$started" "$(elapsed "$t0")"
        return 1
    fi
    size=$(json_num "$work/push.json" bytes)
    rows=$(json_num "$work/push.json" rows)
    tables=$(json_num "$work/push.json" tables)
    ok_db "$label" "$started" "$(elapsed "$t0")" "$size" "$rows" "$tables"
    METRIC["weir_backup_bytes_added{$(metric_label "$label")}"]=$(json_num "$work/push.json" added_bytes)
    log "$label: done in $(elapsed "$t0") s, $size bytes, $(json_num "$work/push.json" added_bytes) added"
}

# Backs up one database; returns non-zero (and says why) if any stage failed.
backup_database() {
    local db=$1 started stamp url t0 stats=$work/extract.json
    if [ "$dedup" = 1 ]; then
        push_dedup "$db" "$(key_name "$db")" weir-extract \
            weir-extract -q "${extract_args[@]}" -d "$(conninfo_db "$db")"
        return
    fi
    [ ${#mask_args[@]} -gt 0 ] && stats=$work/mask.json
    begin_run
    url="$WEIR_BASE$(key_name "$db")/$(key_name "$db")-$stamp$suffix"
    log "$db: backing up to $url"
    weir-extract -q --stats "$work/extract.json" "${extract_args[@]}" -d "$(conninfo_db "$db")" |
        stage_mask | stage_compress | stage_encrypt |
        weir-put -q --if-none-match --stats "$work/put.json" "$url"
    conclude "$db" "$url" database "$started" "$t0" "$stats" \
        "weir-extract weir-mask weir-compress weir-encrypt weir-put" "${PIPESTATUS[@]}"
}

# The roles and tablespaces, once per run: pg_dumpall --globals-only as SQL.
backup_globals() {
    local started stamp url t0 gopts
    read -r -a gopts <<<"${GLOBALS_EXTRA_OPTS:-}"
    # A masked run keeps no secrets, the roles' password verifiers included.
    [ ${#mask_args[@]} -gt 0 ] && gopts+=(--no-role-passwords)
    if [ "$dedup" = 1 ]; then
        # SQL, not an archive: nothing to mask (a masked run leaves the passwords out above).
        local mask_args=()
        push_dedup "(globals)" _globals pg_dumpall pg_dumpall --globals-only "${gopts[@]}"
        return
    fi
    begin_run
    url="${WEIR_BASE}_globals/globals-$stamp${suffix/.weir/.sql}"
    log "globals: backing up to $url"
    pg_dumpall --globals-only "${gopts[@]}" |
        stage_compress | stage_encrypt |
        weir-put -q --if-none-match --stats "$work/put.json" "$url"
    conclude "(globals)" "$url" globals "$started" "$t0" "" \
        "pg_dumpall weir-compress weir-encrypt weir-put" "${PIPESTATUS[@]}"
}

# The manifest of the base backup an incremental builds on: with BASEBACKUP_TYPE=incr the
# newest complete base backup, with diff the newest full one, whose manifest this host kept
# in BASEBACKUP_MANIFEST_DIR; nothing (a full backup) when there is none.
basebackup_parent() {
    local want=${BASEBACKUP_TYPE:-full} sum
    [ "$want" != full ] || return 0
    sum=$(weir-ls --catalog --json "${WEIR_BASE}_physical/" 2>/dev/null | jq -r --arg want "$want" '
        [.[] | select(.physical.manifest_checksum != null)
             | select($want == "incr" or .physical.parent == null)] | last | .physical.manifest_checksum // empty')
    if [ -n "$sum" ] && [ -f "$manifest_dir/$sum.manifest" ]; then
        echo "$manifest_dir/$sum.manifest"
    else
        log "no parent for an incremental (no earlier base backup read with BASEBACKUP_PGDATA, or its manifest is not in $manifest_dir): a full backup"
    fi
}

# The whole instance as one base backup; counted only once its WAL is in WAL_REPO. With
# BASEBACKUP_PGDATA the files are read from the data directory on this host, and
# BASEBACKUP_TYPE=incr or diff makes it incremental (docs/physical.md).
backup_physical() {
    local started stamp url t0 parent=""
    begin_run
    url="${WEIR_BASE}_physical/base-$stamp.tar${suffix#.weir}"
    local -a read=()
    if [ -n "${BASEBACKUP_PGDATA:-}" ]; then
        read=(--pgdata "$BASEBACKUP_PGDATA" -j "${BASEBACKUP_JOBS:-2}" --manifest-file "$work/manifest")
        parent=$(basebackup_parent)
        [ -z "$parent" ] || read+=(--incremental-from "$parent")
    fi
    log "${parent:+incremental }base backup to $url (WAL in $WAL_REPO)"
    weir-basebackup -q -c "${BASEBACKUP_CHECKPOINT:-fast}" -l "weir $stamp" --repo "$WAL_REPO" \
        --stats "$work/base.json" "${read[@]}" |
        stage_compress | stage_encrypt |
        weir-put -q --if-none-match --stats "$work/put.json" "$url"
    conclude "(physical)" "$url" physical "$started" "$t0" "$work/base.json" \
        "weir-basebackup weir-compress weir-encrypt weir-put" "${PIPESTATUS[@]}" || return 1
    if [ -n "${BASEBACKUP_PGDATA:-}" ]; then
        # Kept for the next incremental, named by its checksum as the catalog names it.
        local sum
        sum=$(jq -r '.manifest_checksum // empty' "$work/base.json" 2>/dev/null || true)
        if [ -z "$sum" ] || ! { mkdir -p "$manifest_dir" && cp "$work/manifest" "$manifest_dir/$sum.manifest"; }; then
            log "cannot keep the manifest in $manifest_dir: the next incremental will be a full backup"
        fi
    fi
    wal_lag
}

# The archive's lag, for the metrics: complete segments of the server's timeline that
# WAL_REPO does not hold yet (the server's current segment is still being written). Nothing
# is recorded when either side cannot say (a standby has no current WAL position).
wal_lag() {
    local cur per newest
    read -r cur per < <(psql -X -At -F ' ' -d "$(conninfo_db "${POSTGRES_MAINTENANCE_DB:-postgres}")" \
        -c "SELECT pg_walfile_name(pg_current_wal_lsn()), 4294967296 / setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'" 2>/dev/null)
    [ -n "${per:-}" ] || return 0
    newest=$(weir-wal ls --repo "$WAL_REPO" 2>/dev/null | awk -v tli="${cur:0:8}" '$1 == tli && $2 == "segment" { n = $4 } END { print n }')
    [ -n "$newest" ] || return 0
    local seg_cur=$((16#${cur:8:8} * per + 16#${cur:16:8})) seg_new=$((16#${newest:8:8} * per + 16#${newest:16:8}))
    local lag=$((seg_cur - seg_new - 1))
    [ "$lag" -ge 0 ] || lag=0
    METRIC["weir_backup_wal_lag_segments{$(metric_label "(physical)")}"]=$lag
}

# Retention flags from KEEP_* and BACKUP_KEEP_DAYS.
prune_args=()
[ -n "${KEEP_LAST:-}" ] && prune_args+=(--keep-last "$KEEP_LAST")
[ -n "${KEEP_DAILY:-}" ] && prune_args+=(--keep-daily "$KEEP_DAILY")
[ -n "${KEEP_WEEKLY:-}" ] && prune_args+=(--keep-weekly "$KEEP_WEEKLY")
[ -n "${KEEP_MONTHLY:-}" ] && prune_args+=(--keep-monthly "$KEEP_MONTHLY")
[ -n "${KEEP_YEARLY:-}" ] && prune_args+=(--keep-yearly "$KEEP_YEARLY")
[ -n "${KEEP_WITHIN:-}" ] && prune_args+=(--keep-within "$KEEP_WITHIN")
[ -n "${BACKUP_KEEP_DAYS:-}" ] && prune_args+=(--keep-within "${BACKUP_KEEP_DAYS}d")

# --- the run ---------------------------------------------------------------------------------
metrics_load
if [ "$mode" = physical ]; then
    status=0
    backup_physical || status=1
    metrics_write || log "cannot write the metrics to $METRICS_FILE"
    # Base backups are thinned like dumps; the WAL before the oldest kept one goes with them.
    if [ "$status" = 0 ] && [ ${#prune_args[@]} -gt 0 ]; then
        if ! weir-prune -q "${prune_args[@]}" --wal-repo "$WAL_REPO" "${WEIR_BASE}_physical/" >"$work/prune.out"; then
            log "pruning failed; the base backup itself is complete"
            status=1
        fi
    fi
    [ "$status" = 0 ] && log "base backup complete"
    exit "$status"
fi
databases=()
all=0
case "${POSTGRES_DATABASE:-all}" in
    all | "")
        all=1
        mapfile -t databases < <(list_databases) || true
        if [ ${#databases[@]} -eq 0 ]; then
            # An unreachable server is the failure to alert on most: metrics and webhook too.
            fail_db "(instance)" "listing the databases" "$(date -u +%s)" 0
            metrics_write
            die 1 "cannot list the databases of ${PGHOST:-the local server} (is it reachable?)"
        fi
        ;;
    *)
        # Commas alone separate the names (a name may hold spaces, slashes, any letter);
        # white space around each name is trimmed, so "app, crm" is two.
        IFS=',' read -r -a named <<<"$POSTGRES_DATABASE"
        for db in "${named[@]}"; do
            db=${db#"${db%%[![:space:]]*}"}
            db=${db%"${db##*[![:space:]]}"}
            [ -z "$db" ] || databases+=("$db")
        done
        ;;
esac

failures=0
if [ "${BACKUP_GLOBALS:-$all}" = 1 ]; then
    backup_globals || failures=$((failures + 1))
fi
for db in "${databases[@]}"; do
    backup_database "$db" || failures=$((failures + 1))
done
metrics_write || log "cannot write the metrics to $METRICS_FILE"

# Retention, after the backups: the newest complete backup of each database is never removed.
if [ ${#prune_args[@]} -gt 0 ]; then
    prune_url=$WEIR_BASE
    [ "$dedup" = 1 ] && prune_url=$DEDUP_REPO
    if ! weir-prune -q "${prune_args[@]}" "${repack_args[@]}" "$prune_url" >"$work/prune.out"; then
        log "pruning failed; the backups themselves are complete"
        failures=$((failures + 1))
    fi
fi

if [ "$failures" -gt 0 ]; then
    log "$failures of $((${#databases[@]} + ${BACKUP_GLOBALS:-$all})) backups failed"
    exit 1
fi
log "all backups complete"
