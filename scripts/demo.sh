#!/usr/bin/env bash
# The main job on embedded defaults: start a throwaway PostgreSQL, create sample data, back it
# up through the pipeline to a local file, verify the file, restore it into a new database, and
# check that the restored database equals the source; then the same through backup.sh and
# restore.sh with a catalog. Leaves nothing behind.
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
