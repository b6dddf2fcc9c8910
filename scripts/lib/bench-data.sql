-- The benchmark's mixed-type dataset; psql variable n scales it (1 is about 1 GB of tables).
CREATE TABLE users (id int PRIMARY KEY, name text, email text, created date, active bool, score float8, tags text[]);
INSERT INTO users SELECT g, 'user ' || g, 'u' || g || '@example.com', date '2000-01-01' + g % 9000, g % 3 = 0,
       g / 7.0, ARRAY['a' || g % 10, 'b' || g % 13]
  FROM generate_series(1, (1300000 * :n)::int) g;
CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz, user_id int, kind text, amount numeric(12,2), payload jsonb);
INSERT INTO events (at, user_id, kind, amount, payload)
  SELECT timestamptz '2024-01-01' + g * interval '1 second', g % 1300000, (ARRAY['view','click','buy','refund'])[1 + g % 4],
         (g % 100000) / 100.0, jsonb_build_object('sku', 'S' || g % 997, 'qty', g % 9, 'note', md5(g::text))
  FROM generate_series(1, (2600000 * :n)::int) g;
CREATE INDEX ON events (user_id);
CREATE TABLE logs (id bigint, msg text, ip inet, trace uuid, level smallint);
INSERT INTO logs SELECT g, repeat(md5(g::text), 3) || E'\t' || g, ('10.' || g % 256 || '.' || g % 251 || '.1')::inet,
       md5(g::text)::uuid, g % 5
  FROM generate_series(1, (1700000 * :n)::int) g;
CREATE TABLE small_a AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 200000) g;
CREATE TABLE small_b AS SELECT g AS id, now() AS t FROM generate_series(1, 200000) g;
VACUUM ANALYZE;
