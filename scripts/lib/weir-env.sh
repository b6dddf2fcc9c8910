# shellcheck shell=bash
# Shared by backup.sh and restore.sh: the environment variables both read, logging, names,
# and the metrics and webhook that report a run. Sourced, never run.

# The weir binaries: WEIR_BIN_DIR first (a checkout's target/release, say), then PATH.
[ -n "${WEIR_BIN_DIR:-}" ] && PATH="$WEIR_BIN_DIR:$PATH"

log() { printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${0##*/}" "$*" >&2; }
die() {
    local code=$1
    shift
    log "$*"
    exit "$code"
}

# Maps the variables postgres-backup-s3 users have onto the ones libpq and the AWS SDK
# read, so that every tool (weir's, pg_dumpall, psql) sees the same connection, and works
# out WEIR_BASE: where this instance's backups live.
weir_env_setup() {
    command -v weir-extract >/dev/null || {
        log "weir-extract is not on PATH (set WEIR_BIN_DIR to the directory of the weir binaries)"
        return 1
    }
    [ -n "${POSTGRES_HOST:-}" ] && export PGHOST="$POSTGRES_HOST"
    [ -n "${POSTGRES_PORT:-}" ] && export PGPORT="$POSTGRES_PORT"
    [ -n "${POSTGRES_USER:-}" ] && export PGUSER="$POSTGRES_USER"
    if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
        POSTGRES_PASSWORD=$(head -n1 "$POSTGRES_PASSWORD_FILE") || return 1
    fi
    [ -n "${POSTGRES_PASSWORD:-}" ] && export PGPASSWORD="$POSTGRES_PASSWORD"
    if [ -n "${PASSPHRASE_FILE:-}" ]; then
        # shellcheck disable=SC2034 # read by the scripts that source this file
        PASSPHRASE=$(head -n1 "$PASSPHRASE_FILE") || return 1
    fi
    [ -n "${S3_ACCESS_KEY_ID:-}" ] && export AWS_ACCESS_KEY_ID="$S3_ACCESS_KEY_ID"
    [ -n "${S3_SECRET_ACCESS_KEY:-}" ] && export AWS_SECRET_ACCESS_KEY="$S3_SECRET_ACCESS_KEY"
    [ -n "${S3_REGION:-}" ] && export AWS_REGION="$S3_REGION"
    [ -n "${S3_ENDPOINT:-}" ] && export AWS_ENDPOINT_URL="$S3_ENDPOINT"
    if [ -n "${BACKUP_DIR:-}" ]; then
        mkdir -p "$BACKUP_DIR" || return 1
        WEIR_BASE="${BACKUP_DIR%/}/${S3_PREFIX:+${S3_PREFIX%/}/}"
    elif [ -n "${S3_BUCKET:-}" ]; then
        WEIR_BASE="s3://$S3_BUCKET/${S3_PREFIX-backup}"
        WEIR_BASE="${WEIR_BASE%/}/"
    else
        log "no destination: set S3_BUCKET (with S3_PREFIX, S3_ENDPOINT, ...) or BACKUP_DIR"
        return 1
    fi
    export WEIR_BASE
}

# A database name as a safe object-name part: letters, digits, '.', '_' and '-' stay, every
# other byte becomes %XX (so "my db" and "my%20db" cannot collide).
key_name() {
    local LC_ALL=C s=$1 out="" c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
            [A-Za-z0-9._-]) out+=$c ;;
            *) printf -v c '%%%02X' "'$c" && out+=$c ;;
        esac
    done
    printf '%s' "$out"
}

# A conninfo naming one database, quoted so any name is taken literally (a name holding '='
# would otherwise be read as a conninfo string).
conninfo_db() {
    local v=${1//\\/\\\\}
    v=${v//\'/\\\'}
    printf "dbname='%s'" "$v"
}

# Names the stage that failed: the first that exited non-zero for a reason of its own,
# not because a later stage went away (141, broken pipe). Arguments: the stage names as one
# word list, then each stage's exit status.
failed_stage() {
    local -a names
    read -r -a names <<<"$1"
    shift
    local -a codes=("$@")
    local i
    for i in "${!codes[@]}"; do
        if [ "${codes[$i]}" != 0 ] && [ "${codes[$i]}" != 141 ]; then
            echo "${names[$i]} (exit ${codes[$i]})"
            return
        fi
    done
    for i in "${!codes[@]}"; do
        if [ "${codes[$i]}" != 0 ]; then
            echo "${names[$i]} (exit ${codes[$i]})"
            return
        fi
    done
}

# A JSON string literal.
json_str() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\r'/\\r}
    s=${s//$'\t'/\\t}
    printf '"%s"' "$s"
}

# json_num FILE KEY: the number under KEY in a one-line JSON file (the first, at any depth);
# 0 when there is none. Enough for the flat stats files the stages write.
json_num() {
    local n
    n=$(grep -o "[{,]\"$2\":[0-9]*" "$1" 2>/dev/null | head -n1 | cut -d: -f2)
    printf '%s' "${n:-0}"
}

# Seconds since $1 (a `date +%s.%N` reading), with millisecond precision.
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }'; }

list_databases() {
    psql -X -At -v ON_ERROR_STOP=1 -d "$(conninfo_db "${POSTGRES_MAINTENANCE_DB:-postgres}")" \
        -c "SELECT datname FROM pg_catalog.pg_database WHERE NOT datistemplate AND datallowconn ORDER BY 1"
}

# --- metrics -----------------------------------------------------------------------------
# Prometheus textfile metrics, per database. The previous file is read first so that a
# failed run keeps the last success time and counts up the failures; the new file replaces
# it with one rename, so node_exporter never reads half of it.
declare -A METRIC=()
METRIC_NAMES=(
    "weir_backup_success|gauge|1 if the last backup of the database succeeded, 0 if it failed."
    "weir_backup_last_run_timestamp_seconds|gauge|When the last backup of the database started."
    "weir_backup_last_success_timestamp_seconds|gauge|When the last successful backup of the database started."
    "weir_backup_duration_seconds|gauge|How long the last backup of the database took."
    "weir_backup_bytes|gauge|Stored size of the last successful backup (DEDUP=1: the size of its stream)."
    "weir_backup_bytes_added|gauge|DEDUP=1: what the last successful backup added to the repository (new chunks, stored size)."
    "weir_backup_rows|gauge|Rows in the last successful backup."
    "weir_backup_tables|gauge|Tables with data in the last successful backup."
    "weir_backup_failures_total|counter|Failed backups of the database, over every run this file has seen."
    "weir_backup_wal_lag_segments|gauge|Physical job: complete WAL segments the server has written that WAL_REPO does not hold, after the last successful base backup."
)

metric_label() {
    local s=${1//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    printf 'database="%s"' "$s"
}

metrics_load() {
    [ -n "${METRICS_FILE:-}" ] && [ -r "$METRICS_FILE" ] || return 0
    local line re='^(weir_backup_[a-z_]+)(\{.*\}) ([0-9.eE+-]+)$'
    while IFS= read -r line; do
        [[ $line =~ $re ]] && METRIC["${BASH_REMATCH[1]}${BASH_REMATCH[2]}"]=${BASH_REMATCH[3]}
    done <"$METRICS_FILE"
}

# ok_db DB STARTED DURATION BYTES ROWS TABLES
ok_db() {
    local l
    l="{$(metric_label "$1")}"
    METRIC["weir_backup_success$l"]=1
    METRIC["weir_backup_last_run_timestamp_seconds$l"]=$2
    METRIC["weir_backup_last_success_timestamp_seconds$l"]=$2
    METRIC["weir_backup_duration_seconds$l"]=$3
    METRIC["weir_backup_bytes$l"]=${4:-0}
    METRIC["weir_backup_rows$l"]=${5:-0}
    METRIC["weir_backup_tables$l"]=${6:-0}
    : "${METRIC["weir_backup_failures_total$l"]:=0}"
}

# fail_db DB STAGE STARTED DURATION: records the failure, says so, and calls the webhook.
fail_db() {
    local l
    l="{$(metric_label "$1")}"
    METRIC["weir_backup_success$l"]=0
    METRIC["weir_backup_last_run_timestamp_seconds$l"]=$3
    METRIC["weir_backup_duration_seconds$l"]=$4
    METRIC["weir_backup_failures_total$l"]=$((${METRIC["weir_backup_failures_total$l"]:-0} + 1))
    log "$1: FAILED at stage $2; nothing was added to the catalog"
    webhook failure "$1" "stage $2 failed"
}

metrics_write() {
    [ -n "${METRICS_FILE:-}" ] || return 0
    local dir tmp entry name type help key
    dir=$(dirname "$METRICS_FILE")
    mkdir -p "$dir" || return 1
    tmp=$(mktemp "$dir/.weir-metrics.XXXXXX") || return 1
    {
        for entry in "${METRIC_NAMES[@]}"; do
            IFS='|' read -r name type help <<<"$entry"
            printf '# HELP %s %s\n# TYPE %s %s\n' "$name" "$help" "$name" "$type"
            for key in "${!METRIC[@]}"; do
                if [ "${key%%\{*}" = "$name" ]; then printf '%s %s\n' "$key" "${METRIC[$key]}"; fi
            done | sort
        done
    } >"$tmp" && chmod 644 "$tmp" && mv -f "$tmp" "$METRICS_FILE"
}

# webhook EVENT DATABASE MESSAGE: a JSON POST to WEBHOOK_URL, if set. A webhook that fails
# is logged, never the reason a backup fails.
webhook() {
    [ -n "${WEBHOOK_URL:-}" ] || return 0
    local body
    body=$(printf '{"event":%s,"database":%s,"message":%s,"source":%s,"destination":%s,"time":%s}' \
        "$(json_str "$1")" "$(json_str "$2")" "$(json_str "$3")" \
        "$(json_str "${PGHOST:-local}:${PGPORT:-5432}")" "$(json_str "${WEIR_BASE:-}")" \
        "$(json_str "$(date -u +%Y-%m-%dT%H:%M:%SZ)")")
    if ! command -v curl >/dev/null; then
        log "WEBHOOK_URL is set but curl is not installed; webhook not sent"
        return 0
    fi
    # The URL often carries a token: it goes to curl on stdin, never on its command line.
    printf 'url = "%s"\n' "${WEBHOOK_URL//\"/\\\"}" |
        curl -fsS -m "${WEBHOOK_TIMEOUT:-10}" -K - -X POST \
            -H 'Content-Type: application/json' --data-binary "$body" >/dev/null ||
        log "the failure webhook could not be delivered"
}
