#!/usr/bin/env bash
# Restores a backup that backup.sh made: the latest of a database, or a named one, into a
# database of any instance, whole or only some tables or schemas, optionally with the roles
# and tablespaces first. Configured by the same environment variables as backup.sh
# (docs/jobs.md); POSTGRES_* name the instance to restore into.
#
#   RESTORE_DATABASE=app scripts/restore.sh                     # the latest backup of app
#   RESTORE_DATABASE=app scripts/restore.sh 20261122T030000Z    # the one taken then
#   scripts/restore.sh s3://backups/backup/app/app-20261122T030000Z.weir.zst.age
#   RESTORE_MODE=physical RESTORE_PGDATA=/srv/pg RESTORE_TARGET_TIME='2026-12-01 10:00:00+00' \
#       scripts/restore.sh                                      # point-in-time recovery
#
# Nothing is committed unless the whole archive arrived and verified (weir-load): a wrong
# passphrase, a corrupt or truncated object fails before the target is touched.
set -uo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/weir-env.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/weir-env.sh"
weir_env_setup || exit 2

name=${1:-${BACKUP_NAME:-}}

# Decryption and decompression follow the object's name, which backup.sh chose by them.
decrypt_args=(-d)
[ -n "${AGE_IDENTITY_FILE:-}" ] && decrypt_args+=(-i "$AGE_IDENTITY_FILE")
[ -n "${PASSPHRASE:-}" ] && export WEIR_PASSPHRASE="$PASSPHRASE"
stage_decrypt() { if [[ $1 == *.age ]]; then weir-encrypt "${decrypt_args[@]}"; else cat; fi; }
stage_decompress() { if [[ $1 == *.zst || $1 == *.zst.age ]]; then weir-compress -d; else cat; fi; }

# Says which stage failed, if one did.
check() {
    local stage
    stage=$(failed_stage "$@")
    [ -z "$stage" ] || die 1 "restore FAILED at stage $stage"
}

# psql replaying the roles and tablespaces (SQL on stdin) into the maintenance database; what
# it says is kept for globals_verdict.
globals_psql() {
    psql -X -q -v ON_ERROR_STOP=0 -d "$(conninfo_db "${POSTGRES_MAINTENANCE_DB:-postgres}")" \
        2>"${TMPDIR:-/tmp}/weir-restore-globals.$$"
}

# The verdict on a globals pipeline (its stage names, then their exit statuses). A role that
# exists already is reported by psql and kept, as when replaying pg_dumpall's output by hand;
# any other error fails the restore.
globals_verdict() {
    local errors
    errors=$(grep -v 'already exists' "${TMPDIR:-/tmp}/weir-restore-globals.$$" | grep 'ERROR' || true)
    rm -f "${TMPDIR:-/tmp}/weir-restore-globals.$$"
    check "$@"
    [ -z "$errors" ] || die 1 "restoring the globals failed: $(head -n1 <<<"$errors")"
}

if [ "${RESTORE_MODE:-logical}" = physical ]; then
    # shellcheck source-path=SCRIPTDIR source=lib/restore-physical.sh
    . "$(dirname "${BASH_SOURCE[0]}")/lib/restore-physical.sh"
    restore_physical "$name"
    exit
fi
[ "${RESTORE_MODE:-logical}" = logical ] || die 2 "RESTORE_MODE=$RESTORE_MODE: expected logical or physical"
source_db=${RESTORE_DATABASE:-}
if [ -z "$source_db" ] && [ -n "${POSTGRES_DATABASE:-}" ] && [ "$POSTGRES_DATABASE" != all ] &&
    [[ $POSTGRES_DATABASE != *,* ]]; then
    source_db=$POSTGRES_DATABASE
fi

load_args=()
[ "${RESTORE_CREATE:-0}" = 1 ] && load_args+=(--create)
[ "${RESTORE_CLEAN:-0}" = 1 ] && load_args+=(--clean --if-exists)
[ "${RESTORE_NO_OWNER:-0}" = 1 ] && load_args+=(--no-owner)
[ -n "${RESTORE_JOBS:-}" ] && load_args+=(-j "$RESTORE_JOBS")
tables=${RESTORE_TABLES:-}
for t in ${tables//,/ }; do load_args+=(-t "$t"); done
schemas=${RESTORE_SCHEMAS:-}
for n in ${schemas//,/ }; do load_args+=(-n "$n"); done
read -r -a extra <<<"${RESTORE_EXTRA_OPTS:-}"
load_args+=("${extra[@]}")

# DEDUP=1: the backup is NAME or NAME@STAMP in the deduplicated repository backup.sh pushed to.
if [ "${DEDUP:-0}" = 1 ]; then
    DEDUP_REPO=${DEDUP_REPO:-${WEIR_BASE}_dedup}
    [ -n "$source_db" ] || die 2 "which database? set RESTORE_DATABASE"
    cat_args=()
    [ -n "${AGE_IDENTITY_FILE:-}" ] && cat_args+=(-i "$AGE_IDENTITY_FILE")
    which=$(key_name "$source_db")${name:+@$name}
    if [ "${RESTORE_GLOBALS:-0}" = 1 ]; then
        log "restoring roles and tablespaces from $DEDUP_REPO _globals (the latest)"
        weir-dedup cat "$DEDUP_REPO" _globals "${cat_args[@]}" | globals_psql
        globals_verdict "weir-dedup psql" "${PIPESTATUS[@]}"
    fi
    target=${RESTORE_TARGET_DATABASE:-$source_db}
    log "restoring $which from $DEDUP_REPO into database $target on ${PGHOST:-the local server}"
    weir-dedup cat "$DEDUP_REPO" "$which" "${cat_args[@]}" |
        weir-load -q "${load_args[@]}" -d "$(conninfo_db "$target")"
    codes=("${PIPESTATUS[@]}")
    # weir-dedup's 4: no such backup, as below.
    [ "${codes[0]}" = 4 ] && die 4 "no backup $which in $DEDUP_REPO (see weir-dedup ls $DEDUP_REPO)"
    check "weir-dedup weir-load" "${codes[@]}"
    log "restored $which into $target"
    exit 0
fi

# The catalog line (TIME DATABASE ... URL) of the backup to restore.
pick() {
    local prefix=$1 want=$2
    weir-ls --catalog "$prefix" | awk -v want="$want" '
        NR > 1 && (want == "" || index($NF, want)) { line = $0 }
        END { if (line != "") print line }'
}

case "$name" in
    s3://* | file://* | /*)
        url=$name
        line=$(pick "${url%/*}/" "$url") || exit 1
        ;;
    *)
        [ -n "$source_db" ] || die 2 "which database? set RESTORE_DATABASE (or give a backup's address)"
        line=$(pick "$WEIR_BASE$(key_name "$source_db")/" "$name") || exit 1
        ;;
esac
[ -n "$line" ] || die 4 "no complete backup of ${source_db:-$name}${name:+ matching $name} under $WEIR_BASE (see weir-ls --catalog $WEIR_BASE)"
url=${line##* }
backup_time=${line%% *}

# Roles and tablespaces first, so the owners and grants of the database exist: the newest
# globals backup taken no later than the database's.
if [ "${RESTORE_GLOBALS:-0}" = 1 ]; then
    gline=$(weir-ls --catalog "${WEIR_BASE}_globals/" | awk -v t="$backup_time" '
        NR > 1 && $1 <= t { line = $0 } END { if (line != "") print line }') || exit 1
    [ -n "$gline" ] || die 4 "RESTORE_GLOBALS=1, but no globals backup under ${WEIR_BASE}_globals/ is older than $backup_time"
    gurl=${gline##* }
    log "restoring roles and tablespaces from $gurl"
    weir-get -q "$gurl" | stage_decrypt "$gurl" | stage_decompress "$gurl" | globals_psql
    globals_verdict "weir-get weir-encrypt weir-compress psql" "${PIPESTATUS[@]}"
fi

target=${RESTORE_TARGET_DATABASE:-$source_db}
if [ -z "$target" ]; then
    # Named by address only: restore into the database the archive came from, whose name
    # backup.sh put in the object's directory, %XX-encoded (a name may hold spaces).
    dbdir=${url%/*}
    dbdir=${dbdir##*/}
    printf -v target '%b' "${dbdir//%/\\x}"
fi
log "restoring $url into database $target on ${PGHOST:-the local server}"
weir-get -q "$url" | stage_decrypt "$url" | stage_decompress "$url" |
    weir-load -q "${load_args[@]}" -d "$(conninfo_db "$target")"
codes=("${PIPESTATUS[@]}")
check "weir-get weir-encrypt weir-compress weir-load" "${codes[@]}"
log "restored $url into $target"
