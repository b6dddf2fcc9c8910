# shellcheck shell=bash
# restore.sh's physical mode: picks the base backup for the recovery target from the catalog
# (weir-catalog pick), restores it (weir-restore-physical), starts the server, waits until
# recovery reached the target, and says where it stopped. Sourced by restore.sh after
# weir-env.sh exists; never run.
# shellcheck disable=SC2154 # WEIR_BASE comes from weir-env.sh.

# restore_physical [NAME|URL]: exit 0 only once the server stands at the target (paused,
# promoted or shut down there, as RESTORE_TARGET_ACTION says) or, with no target, has replayed
# every archived segment and opened.
restore_physical() {
    local name=$1 url pgdata=${RESTORE_PGDATA:-${PGDATA:-}} wal_repo=${WAL_REPO:-${WEIR_BASE}_wal}
    local action=${RESTORE_TARGET_ACTION:-pause} n=0
    [ -n "$pgdata" ] || die 2 "RESTORE_MODE=physical: set RESTORE_PGDATA, the data directory to restore into"
    local -a aim=() pick=()
    if [ -n "${RESTORE_TARGET_TIME:-}" ]; then
        aim+=(--target-time "$RESTORE_TARGET_TIME") && pick+=(--target-time "$RESTORE_TARGET_TIME") && n=$((n + 1))
    fi
    if [ -n "${RESTORE_TARGET_LSN:-}" ]; then
        aim+=(--target-lsn "$RESTORE_TARGET_LSN") && pick+=(--target-lsn "$RESTORE_TARGET_LSN") && n=$((n + 1))
    fi
    [ -n "${RESTORE_TARGET_XID:-}" ] && aim+=(--target-xid "$RESTORE_TARGET_XID") && n=$((n + 1))
    [ -n "${RESTORE_TARGET_NAME:-}" ] && aim+=(--target-name "$RESTORE_TARGET_NAME") && n=$((n + 1))
    [ "${RESTORE_TARGET_IMMEDIATE:-0}" = 1 ] && aim+=(--target-immediate) && n=$((n + 1))
    [ "$n" -le 1 ] || die 2 "give one recovery target: RESTORE_TARGET_TIME, _LSN, _XID, _NAME or _IMMEDIATE=1"
    [ "${RESTORE_TARGET_EXCLUSIVE:-0}" = 1 ] && aim+=(--target-exclusive)
    if [ -n "${RESTORE_TARGET_TIMELINE:-}" ]; then
        aim+=(--target-timeline "$RESTORE_TARGET_TIMELINE")
        [[ $RESTORE_TARGET_TIMELINE =~ ^[0-9]+$ ]] && pick+=(--target-timeline "$RESTORE_TARGET_TIMELINE")
    fi
    [ "$n" = 1 ] && aim+=(--target-action "$action")

    local prefix="${WEIR_BASE}_physical/"
    case "$name" in
        s3://* | file://* | /*) url=$name ;;
        "")
            url=$(weir-catalog pick "${pick[@]}" "$prefix")
            local code=$?
            [ "$code" = 0 ] || die "$code" "no base backup under $prefix can reach the target (see weir-ls --catalog $prefix)"
            ;;
        *)
            url=$(weir-ls --catalog "$prefix" | awk -v want="$name" 'NR > 1 && index($NF, want) { u = $NF } END { print u }')
            [ -n "$url" ] || die 4 "no complete base backup matching $name under $prefix"
            ;;
    esac

    local -a args=(-D "$pgdata" --repo "$wal_repo")
    [ -n "${AGE_IDENTITY_FILE:-}" ] && args+=(-i "$AGE_IDENTITY_FILE")
    # The server may run elsewhere (another container) with weir-wal at another path.
    [ -n "${RESTORE_COMMAND:-}" ] && args+=(--restore-command "$RESTORE_COMMAND")
    local m
    local maps=${RESTORE_TABLESPACE_MAPPING:-}
    for m in ${maps//,/ }; do args+=(-T "$m"); done
    # weir-restore-physical reads the object itself (--from), decrypting and decompressing it
    # on several threads; an incremental restores as its chain, which it finds in the catalog
    # beside it (full first, each over the last, the target on the last).
    [ "${RESTORE_CLEAR:-0}" = 1 ] && args+=(--clear)
    log "restoring base backup $url into $pgdata (WAL from $wal_repo)"
    weir-restore-physical "${args[@]}" "${aim[@]}" --from "$url" ||
        die $? "restore FAILED at stage weir-restore-physical"
    if [ "${RESTORE_START:-1}" != 1 ]; then
        log "restored; start the server in $pgdata to recover"
        return 0
    fi
    recover "$pgdata" "$action" "$n"
}

# recover PGDATA ACTION TARGETS: starts the server and waits for recovery to end, at most
# RESTORE_WAIT seconds (default 3600).
recover() {
    local pgdata=$1 action=$2 targeted=$3 bindir log state stop
    bindir=${WEIR_PG_BINDIR:-$(pg_config --bindir 2>/dev/null)}
    log=${RESTORE_LOG:-$pgdata/weir-recovery.log}
    local -a opts=()
    [ -n "${PGPORT:-}" ] && opts+=("-p $PGPORT")
    [[ ${PGHOST:-} == /* ]] && opts+=("-k $PGHOST")
    [ -n "${RESTORE_PG_OPTS:-}" ] && opts+=("$RESTORE_PG_OPTS")
    # -w: back once the server takes (read-only) connections, or failed before it could.
    "${bindir:+$bindir/}pg_ctl" -D "$pgdata" -l "$log" -o "${opts[*]}" -w -t "${RESTORE_WAIT:-3600}" start >/dev/null ||
        die 1 "cannot start the server in $pgdata (see $log)"
    local deadline=$(($(date +%s) + ${RESTORE_WAIT:-3600}))
    while :; do
        if ! "${bindir:+$bindir/}pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
            # Stopped: by itself at the target (shutdown), or because recovery failed.
            state=""
            grep -q 'recovery stopping' "$log" && [ "$action" = shutdown ] && break
            die 1 "recovery FAILED: $(grep -E 'FATAL|PANIC' "$log" | tail -n1)"
        fi
        state=$(psql -X -At -d "$(conninfo_db "${POSTGRES_MAINTENANCE_DB:-postgres}")" \
            -c "SELECT CASE WHEN pg_is_in_recovery() THEN 't ' || pg_get_wal_replay_pause_state() ELSE 'f' END" 2>/dev/null)
        case "$state" in
            "t paused" | f) break ;;
        esac
        [ "$(date +%s)" -lt "$deadline" ] || die 1 "recovery did not end within ${RESTORE_WAIT:-3600} s (the server still runs; see $log)"
        sleep 1
    done
    stop=$(grep 'recovery stopping' "$log" | tail -n1)
    if [ "$targeted" = 1 ]; then
        [ -n "$stop" ] || die 1 "recovery ended without reaching the target (see $log)"
        local where=open
        [ "$state" = "t paused" ] && where="paused there (SELECT pg_wal_replay_resume() opens it)"
        [ -z "$state" ] && where="shut down"
        log "recovery stopped: ${stop#*LOG:  }; the server is $where"
    else
        log "recovery replayed the whole archive: $(grep 'last completed transaction' "$log" | tail -n1 | sed 's/.*LOG:  //'); the server is open"
    fi
}
