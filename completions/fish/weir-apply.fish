complete -c weir-apply -s d -l dbname -d 'Same as the DBNAME argument' -r
complete -c weir-apply -s h -l host -d 'Server host name or Unix-socket directory (overrides the conninfo and PGHOST)' -r
complete -c weir-apply -s p -l port -d 'Server port (overrides the conninfo and PGPORT)' -r
complete -c weir-apply -s U -l username -d 'User name (overrides the conninfo and PGUSER). Passwords never go on the command line: use PGPASSWORD, PGPASSFILE or ~/.pgpass' -r
complete -c weir-apply -l origin -d 'The replication origin that records the target\'s progress (created when missing)' -r
complete -c weir-apply -s f -l file -d 'Read the stream from FILE instead of standard input' -r
complete -c weir-apply -l skip-ddl-through -d 'Pass over DDL messages at or before LSN (one applied by hand, after weir-apply stopped at it)' -r
complete -c weir-apply -l on-error -d 'What a transaction the target refuses does: stop (name it and exit 1), or dead-letter=FILE (roll it back, append its lines to FILE, record it as applied, go on)' -r
complete -c weir-apply -s j -l jobs -d 'Connections that read the target\'s tables when the stream asks for a check (weir-cdc --verify)' -r
complete -c weir-apply -l metrics -d 'Write what the target took as a Prometheus textfile to FILE (every few seconds and at exit): transactions applied, skipped and dead-lettered, the origin\'s position, the source commit time of the last transaction applied' -r -F
complete -c weir-apply -l apply-ddl -d 'Run the DDL statements weir-cdc --track-ddl put in the stream, each where it was in its source transaction (without it they are passed over, and said so once)'
complete -c weir-apply -s q -l quiet -d 'Print nothing but errors'
complete -c weir-apply -l help -d 'Print help'
complete -c weir-apply -s V -l version -d 'Print version'
