-- One day of changes for the weir-dedup benchmark (scripts/lib/bench-dedup.sh), on a copy of
-- the bench data: 1% of the rows of users and events updated (a run of ids among the newest
-- tenth, where day :d puts it), 0.5% of every table's rows inserted, 0.2% deleted (the oldest,
-- as retention deletes); then VACUUM, as autovacuum would, so later writes reuse the space.
\set upd (13000 * :n)::int
\set ins_u (6500 * :n)::int
\set ins_e (13000 * :n)::int
\set ins_l (8500 * :n)::int
UPDATE users SET score = score + 1, active = NOT active
 WHERE id BETWEEN (SELECT max(id) FROM users) * 9 / 10 + (:d * 7919) % ((SELECT max(id) FROM users) / 10 - :upd)
              AND (SELECT max(id) FROM users) * 9 / 10 + (:d * 7919) % ((SELECT max(id) FROM users) / 10 - :upd) + :upd;
UPDATE events SET amount = amount + 1, kind = 'refund'
 WHERE id BETWEEN (SELECT max(id) FROM events) * 9 / 10 + (:d * 7919) % ((SELECT max(id) FROM events) / 10 - 2 * :upd)
              AND (SELECT max(id) FROM events) * 9 / 10 + (:d * 7919) % ((SELECT max(id) FROM events) / 10 - 2 * :upd) + 2 * :upd;
INSERT INTO users SELECT m + g, 'user ' || (m + g), 'u' || (m + g) || '@example.com', date '2000-01-01' + g % 9000,
       g % 3 = 0, g / 7.0, ARRAY['a' || g % 10] FROM (SELECT max(id) m FROM users) s, generate_series(1, :ins_u) g;
INSERT INTO events (at, user_id, kind, amount, payload)
  SELECT now(), g % 1300000, 'view', g / 100.0, jsonb_build_object('sku', 'S' || g % 997, 'day', :d)
  FROM generate_series(1, :ins_e) g;
INSERT INTO logs SELECT m + g, 'day ' || :d || ' ' || md5(g::text), '10.0.0.1', md5((m + g)::text)::uuid, g % 5
  FROM (SELECT max(id) m FROM logs) s, generate_series(1, :ins_l) g;
DELETE FROM users WHERE id < (SELECT min(id) FROM users) + (2600 * :n)::int;
DELETE FROM events WHERE id < (SELECT min(id) FROM events) + (5200 * :n)::int;
DELETE FROM logs WHERE id < (SELECT min(id) FROM logs) + (3400 * :n)::int;
VACUUM;
