complete -c weir-load -s d -l dbname -d 'Same as the DBNAME argument' -r
complete -c weir-load -s h -l host -d 'Server host name or Unix-socket directory (overrides the conninfo and PGHOST)' -r
complete -c weir-load -s p -l port -d 'Server port (overrides the conninfo and PGPORT)' -r
complete -c weir-load -s U -l username -d 'User name (overrides the conninfo and PGUSER). Passwords never go on the command line: use PGPASSWORD, PGPASSFILE or ~/.pgpass' -r
complete -c weir-load -s i -l input -d 'Read the archive from FILE instead of standard input' -r
complete -c weir-load -s j -l jobs -d 'Number of connections that load data and build indexes in parallel' -r
complete -c weir-load -s t -l table -d 'Restore only tables matching PATTERN, with their indexes, constraints, triggers and sequences (repeatable)' -r
complete -c weir-load -s n -l schema -d 'Restore only objects in schemas matching NAME (repeatable)' -r
complete -c weir-load -l transaction-size -d 'Commit N tables at a time per connection, and the schema statement by statement, where one transaction would overflow the server\'s lock table (as pg_restore 17\'s option of the name). A truncated or corrupt stream then leaves what was committed before it' -r
complete -c weir-load -s C -l create -d 'Create the target database first (and drop it again if the load fails)'
complete -c weir-load -s c -l clean -d 'Drop the archive\'s objects from the target before creating them'
complete -c weir-load -l if-exists -d 'With --clean, do not fail on objects that do not exist (always the case in weir)'
complete -c weir-load -s O -l no-owner -d 'Do not set object ownership to match the source; objects belong to the loading user'
complete -c weir-load -s x -l no-acl -d 'Do not restore access privileges (GRANT/REVOKE)'
complete -c weir-load -s s -l schema-only -d 'Restore only the schema, no rows (the archive is still verified completely)'
complete -c weir-load -s a -l data-only -d 'Restore only rows, sequences and large objects into existing tables'
complete -c weir-load -l disable-triggers -d 'With --data-only, keep triggers and foreign-key checks from firing during the load (needs a superuser)'
complete -c weir-load -l globals -d 'Also restore roles and tablespaces, if the archive has them'
complete -c weir-load -l progress -d 'Print a progress line every few seconds even when stderr is not a terminal'
complete -c weir-load -s q -l quiet -d 'Print nothing but errors'
complete -c weir-load -s v -l verbose -d 'Report each phase (schema, data, indexes) as it ends, with elapsed time'
complete -c weir-load -l help -d 'Print help'
complete -c weir-load -s V -l version -d 'Print version'
