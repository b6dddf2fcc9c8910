#!/usr/bin/env bash
# The three halves on one throwaway PostgreSQL, with embedded defaults, leaving nothing behind:
# - dumps: sample data backed up through the pipeline to a local file, verified, restored into
#   a new database and compared with the source; then the same through backup.sh and
#   restore.sh with a catalog;
# - physical backups and point-in-time recovery: WAL archived by weir-wal, a base backup, rows
#   written before and after a noted time, and a restore to that time that has the first and
#   not the second;
# - change data capture: a copy-and-stream into a second database, changes after it, and a
#   check that the copy equals the source.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/prereqs.sh
. scripts/lib/scratch-pg.sh
weir_install_prereqs
cargo build --release --quiet
export PATH="$PWD/target/release:$PATH"
work=$(mktemp -d)
trap 'scratch_pg_stop; rm -rf "$work"' EXIT
scratch_pg_start
echo "== throwaway PostgreSQL on $PGHOST port $PGPORT"

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c 'CREATE DATABASE demo'
psql -X -q -v ON_ERROR_STOP=1 -d demo <<'SQL'
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE, note text);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers,
                     placed_at timestamptz NOT NULL, total numeric(12,2), items jsonb);
CREATE INDEX ON orders (placed_at);
INSERT INTO customers (name, email, note)
  SELECT 'Customer ' || g, 'c' || g || '@example.com', CASE WHEN g % 7 = 0 THEN E'tab\there\nnewline \\N' END
  FROM generate_series(1, 20000) g;
INSERT INTO orders (customer_id, placed_at, total, items)
  SELECT 1 + g % 20000, timestamptz '2024-01-01' + g * interval '1 minute', (g % 1000) / 3.0,
         jsonb_build_object('sku', 'S' || g % 97, 'qty', g % 5)
  FROM generate_series(1, 200000) g;
CREATE MATERIALIZED VIEW daily AS SELECT placed_at::date AS day, sum(total) FROM orders GROUP BY 1;
SELECT lo_from_bytea(0, 'a large object') \g /dev/null
SQL

echo "== weir-extract -j 2 demo > demo.weir"
weir-extract -j 2 demo > "$work/demo.weir"
echo "== weir-inspect --verify < demo.weir"
weir-inspect --verify < "$work/demo.weir"
echo "== weir-load --create -j 2 demo_restored < demo.weir"
weir-load --create -j 2 demo_restored < "$work/demo.weir"

echo "== comparing source and restored database"
strip() { grep -v '^\\\(un\)\?restrict'; }
diff <(pg_dump --schema-only demo | strip) <(pg_dump --schema-only demo_restored | strip) >/dev/null
digest() {
    psql -X -A -t -d "$1" -c "
      SELECT 'customers ' || md5(string_agg(c::text, ',' ORDER BY c.id)) FROM customers c
      UNION ALL SELECT 'orders ' || md5(string_agg(o::text, ',' ORDER BY o.id)) FROM orders o
      UNION ALL SELECT 'daily ' || md5(string_agg(d::text, ',' ORDER BY d.day)) FROM daily d
      UNION ALL SELECT 'sequence ' || last_value FROM orders_id_seq
      UNION ALL SELECT 'large objects ' || md5(string_agg(md5(lo_get(oid)), ',' ORDER BY oid)) FROM pg_largeobject_metadata"
}
diff <(digest demo) <(digest demo_restored)
digest demo_restored | sed 's/^/   /'
echo "== OK: the restored database equals the source (schema, rows, sequences, large objects)"

# The same as a scheduled job would do it: backup.sh to a directory (S3_BUCKET instead for
# object storage), the catalog, and restore.sh of the latest backup into yet another database.
echo "== scripts/backup.sh (POSTGRES_DATABASE=demo, BACKUP_DIR, passphrase from a file)"
printf 'demo passphrase\n' > "$work/passphrase"
jobs_env=(POSTGRES_HOST="$PGHOST" POSTGRES_PORT="$PGPORT" POSTGRES_USER="$PGUSER" POSTGRES_DATABASE=demo
    BACKUP_DIR="$work/backups" PASSPHRASE_FILE="$work/passphrase" METRICS_FILE="$work/weir.prom")
env "${jobs_env[@]}" scripts/backup.sh
echo "== weir-ls --catalog -H $work/backups"
weir-ls --catalog -H "$work/backups"
echo "== scripts/restore.sh (RESTORE_TARGET_DATABASE=demo_from_backup, RESTORE_CREATE=1)"
env "${jobs_env[@]}" RESTORE_TARGET_DATABASE=demo_from_backup RESTORE_CREATE=1 scripts/restore.sh
diff <(digest demo) <(digest demo_from_backup)
grep '^weir_backup_success' "$work/weir.prom" | sed 's/^/   /'
echo "== OK: backed up, cataloged and restored by the job scripts, equal to the source"

# Physical backups and point-in-time recovery. The server runs archive_command and
# restore_command itself, as its own user: the binaries, the repository and the key go where
# that user can read them.
echo "== physical: archive_command = 'weir-wal push --repo $work/wal -r age1...'"
bin="$work/bin"
mkdir -p "$bin" "$work/wal"
cp target/release/weir-wal target/release/weir-restore-physical "$bin/"
age-keygen -o "$work/key.txt" 2>/dev/null
recipient=$(age-keygen -y "$work/key.txt")
chmod 755 "$work"
if [ "$(id -u)" = 0 ]; then chown -R postgres "$work"; fi
psql -X -q -v ON_ERROR_STOP=1 -d postgres <<SQL
ALTER SYSTEM SET wal_level = logical;
ALTER SYSTEM SET archive_mode = on;
ALTER SYSTEM SET archive_command = '$bin/weir-wal push --repo $work/wal -r $recipient %p';
SQL
scratch_pg_restart
echo "== weir-basebackup -c fast | weir-compress | weir-encrypt -r age1... > base.tar.zst.age"
weir-basebackup -q -c fast | weir-compress | weir-encrypt -r "$recipient" > "$work/base.tar.zst.age"
sql() { psql -X -A -t -q -v ON_ERROR_STOP=1 "$@"; }
sql -d demo -c 'CREATE TABLE marks (n int, at timestamptz DEFAULT clock_timestamp()); INSERT INTO marks VALUES (1)'
target=$(sql -d demo -c 'SELECT clock_timestamp()')
sleep 1
sql -d demo -c 'INSERT INTO marks VALUES (2)'
echo "   row 1 written, then the time $target, then row 2"
segment=$(sql -d postgres -c 'SELECT pg_walfile_name(pg_switch_wal())')
until [ "$(sql -d postgres -c 'SELECT coalesce(last_archived_wal, $$$$) >= $$'"$segment"'$$ FROM pg_stat_archiver')" = t ]; do
    sleep 0.2
done
echo "== weir-restore-physical -D restored --repo wal -i key.txt --target-time '$target' --target-action promote"
weir-encrypt -d -i "$work/key.txt" < "$work/base.tar.zst.age" | weir-compress -d \
    | "${SCRATCH_AS[@]}" "$bin/weir-restore-physical" -D "$work/restored" --repo "$work/wal" \
        -i "$work/key.txt" --target-time "$target" --target-action promote
port2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${SCRATCH_AS[@]}" "$SCRATCH_BINDIR/pg_ctl" -D "$work/restored" -l "$work/restored.log" -w \
    -o "-p $port2 -k $work -c listen_addresses='' -c archive_mode=off" start >/dev/null
until [ "$(sql -h "$work" -p "$port2" -d postgres -c 'SELECT pg_is_in_recovery()')" = f ]; do
    sleep 0.2
done
rows=$(sql -h "$work" -p "$port2" -d demo -c "SELECT string_agg(n::text, ',' ORDER BY n) FROM marks")
"${SCRATCH_AS[@]}" "$SCRATCH_BINDIR/pg_ctl" -D "$work/restored" -m fast stop >/dev/null
echo "   the restored server holds rows: $rows"
[ "$rows" = 1 ]
echo "== OK: recovered to the time: the row before it is there, the row after it is not"

# Change data capture: the published tables copied into another database as of one snapshot,
# then the changes after it, then a check that the copy equals the source.
lsn() { sql -d demo -c 'SELECT pg_current_wal_lsn()'; }
echo "== weir-cdc demo --copy-and-stream -j 2 | weir-apply demo_cdc"
weir-extract -q -s demo | weir-load -q --create demo_cdc
sql -d demo -c 'CREATE PUBLICATION demo_pub FOR TABLE customers, orders'
weir-cdc -q demo -S demo_slot --publication demo_pub --copy-and-stream -j 2 \
    --confirm-from dbname=demo_cdc -E "$(lsn)" | weir-apply -q demo_cdc
sql -d demo -c "UPDATE customers SET note = 'changed' WHERE id <= 100;
    DELETE FROM orders WHERE id % 1000 = 0;
    INSERT INTO customers (name) SELECT 'Late ' || g FROM generate_series(1, 50) g"
echo "== weir-cdc demo --stream --verify | weir-apply demo_cdc (the changes, then the check)"
weir-cdc -q demo -S demo_slot --publication demo_pub --stream --verify \
    --confirm-from dbname=demo_cdc -E "$(lsn)" | weir-apply demo_cdc 2>&1 | sed 's/^/   /'
weir-cdc -q demo -S demo_slot --drop-slot
echo "== OK: the copy took every change, and the check found it equal to the source"
