complete -c weir-cdc -s d -l dbname -d 'Same as the DBNAME argument' -r
complete -c weir-cdc -s h -l host -d 'Server host name or Unix-socket directory (overrides the conninfo and PGHOST)' -r
complete -c weir-cdc -s p -l port -d 'Server port (overrides the conninfo and PGPORT)' -r
complete -c weir-cdc -s U -l username -d 'User name (overrides the conninfo and PGUSER). Passwords never go on the command line: use PGPASSWORD, PGPASSFILE or ~/.pgpass' -r
complete -c weir-cdc -s S -l slot -d 'The logical replication slot (pgoutput)' -r
complete -c weir-cdc -l proto-version -d 'pgoutput\'s protocol version (default 2 on PostgreSQL 14 and later, which streams big transactions in progress; 1 holds each until its commit)' -r
complete -c weir-cdc -s j -l jobs -d 'Connections that copy tables in parallel (--copy, --copy-and-stream, --resync), or read them for --verify' -r
complete -c weir-cdc -l split-pages -d 'Tables larger than twice this many pages are copied in ranges of this many pages' -r
complete -c weir-cdc -l publication -d 'The publication whose tables are streamed (CREATE PUBLICATION on the source)' -r
complete -c weir-cdc -s I -l startpos -d 'Start at this LSN (default: where the slot\'s confirmed position is)' -r
complete -c weir-cdc -s E -l endpos -d 'Stop, and exit 0, at this LSN: no transaction that commits after it is written' -r
complete -c weir-cdc -s s -l status-interval -d 'Seconds between status updates to the server' -r
complete -c weir-cdc -s o -l output -d 'Write to FILE instead of standard output' -r
complete -c weir-cdc -l confirm-from -d 'Confirm only what the target has made durable: a database (CONNINFO, whose replication origin weir-apply\'s --origin records) or a weir-sink directory (file:///DIR, whose position file weir-sink writes)' -r
complete -c weir-cdc -l origin -d 'The replication origin --confirm-from reads' -r
complete -c weir-cdc -l metrics -d 'Write the slot\'s health as a Prometheus textfile to FILE at each status interval: lag in bytes, wal_status, safe_wal_size, the commit time of the last confirmed change' -r -F
complete -c weir-cdc -l heartbeat -d 'Write a heartbeat message into the source database\'s WAL every SECS seconds, so a slot whose tables are quiet while other databases write keeps moving' -r
complete -c weir-cdc -l backfill -d 'Copy TABLE (in the publication) into the stream while it flows, in chunks by key (a table without one whole, at one snapshot), without a lock; after a crash it goes on after the greatest key the --confirm-from database holds. May be given more than once. (A table added to the publication is copied without it.)' -r
complete -c weir-cdc -l backfill-chunk-rows -d 'Rows read per backfill chunk' -r
complete -c weir-cdc -l verify-chunk-rows -d 'Rows in each chunk the check compares' -r
complete -c weir-cdc -l create-slot -d 'Create the slot (and stop there unless --stream is given too)'
complete -c weir-cdc -l failover -d 'Create the slot as a failover slot, synchronized to standbys that have sync_replication_slots on, so it survives a failover (PostgreSQL 17 and later)'
complete -c weir-cdc -l if-not-exists -d 'With --create-slot, take an existing pgoutput slot of that name as it is'
complete -c weir-cdc -l drop-slot -d 'Drop the slot (after streaming, with --stream)'
complete -c weir-cdc -l stream -d 'Stream the slot\'s changes to the output'
complete -c weir-cdc -l copy -d 'Create the slot with an exported snapshot and write the publication\'s tables as they are in it (insert lines marked "snapshot", one transaction), then stop: --stream resumes after them'
complete -c weir-cdc -l copy-and-stream -d '--copy, then stream from the slot\'s consistent point: no change lost or doubled across the hand-off'
complete -c weir-cdc -l resync -d 'After a lost or dropped slot: drop what is left of it, copy the publication\'s tables afresh as --copy-and-stream does, behind a truncate of each in the same transaction (weir-apply replaces the target\'s tables whole), then stream'
complete -c weir-cdc -l track-ddl -d 'Install (or replace) event triggers on the source database that write each DDL statement into WAL as a logical message, so it reaches weir-apply --apply-ddl in order with the changes (needs a superuser; schema weir_ddl)'
complete -c weir-cdc -l untrack-ddl -d 'Remove what --track-ddl installed'
complete -c weir-cdc -l verify -d 'Check the target against the source: read the publication\'s tables in a snapshot of this moment (-j connections) and put their digests in the stream where that moment is, for weir-apply to compare with the target\'s at the same point. With -E, the run goes at least to that moment and ends once they are written'
complete -c weir-cdc -l backfill-all -d '--backfill every table of the publication, one after the other: an initial copy that a crash does not send back to the start'
complete -c weir-cdc -s q -l quiet -d 'Print nothing but errors'
complete -c weir-cdc -l help -d 'Print help'
complete -c weir-cdc -s V -l version -d 'Print version'
