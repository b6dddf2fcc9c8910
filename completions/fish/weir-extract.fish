complete -c weir-extract -s d -l dbname -d 'Same as the DBNAME argument' -r
complete -c weir-extract -s h -l host -d 'Server host name or Unix-socket directory (overrides the conninfo and PGHOST)' -r
complete -c weir-extract -s p -l port -d 'Server port (overrides the conninfo and PGPORT)' -r
complete -c weir-extract -s U -l username -d 'User name (overrides the conninfo and PGUSER). Passwords never go on the command line: use PGPASSWORD, PGPASSFILE or ~/.pgpass' -r
complete -c weir-extract -s f -l file -d 'Write the archive to FILE instead of standard output' -r
complete -c weir-extract -s j -l jobs -d 'Number of connections that COPY in parallel; big tables are split into page ranges' -r
complete -c weir-extract -s t -l table -d 'Extract only tables matching PATTERN (psql pattern rules; repeatable)' -r
complete -c weir-extract -s T -l exclude-table -d 'Leave out tables matching PATTERN (repeatable)' -r
complete -c weir-extract -s n -l schema -d 'Extract only schemas matching PATTERN (repeatable)' -r
complete -c weir-extract -s N -l exclude-schema -d 'Leave out schemas matching PATTERN (repeatable)' -r
complete -c weir-extract -l exclude-table-data -d 'Keep the definition of tables matching PATTERN but not their rows (repeatable)' -r
complete -c weir-extract -l where -d 'Extract only the rows of TABLE (a pattern) for which the SQL CONDITION holds (repeatable), e.g. --where \'public.orders:created_at > now() - interval \'"\'"\'30 days\'"\'"\'\'' -r
complete -c weir-extract -l subset -d 'Extract the rows of TABLE for which CONDITION holds, every row they reference through foreign keys (transitively), and of the tables that reference these only the rows that point at kept rows, so the result restores with every key valid (repeatable)' -r
complete -c weir-extract -l virtual-fk -d 'A foreign key the schema does not declare, for --subset, e.g. \'public.events(user_id)->public.users(id)\' (repeatable)' -r
complete -c weir-extract -l chunk-size -d 'Target size of a data chunk in bytes (rows are never split)' -r
complete -c weir-extract -l split-pages -d 'Tables larger than twice this many pages are split into ranges of this many pages' -r
complete -c weir-extract -l stats -d 'Once the archive is complete, write what it holds (database, tables, rows, bytes) as one line of JSON to FILE; a failed run writes nothing' -r
complete -c weir-extract -l no-unlogged-table-data -d 'Leave out the rows of unlogged tables, keeping their definitions (always so when the server is a standby, where their files are empty, as with pg_dump)'
complete -c weir-extract -s s -l schema-only -d 'The definitions only: no table\'s rows, no large objects (as pg_dump --schema-only)'
complete -c weir-extract -l subset-dependents -d 'With --subset, also keep the rows that reference the subset\'s rows (transitively), and the rows these reference'
complete -c weir-extract -l globals -d 'Include roles and tablespaces (pg_dumpall --globals-only; needs a superuser)'
complete -c weir-extract -s b -l large-objects -d 'Include large objects even when tables or schemas were selected'
complete -c weir-extract -s B -l no-large-objects -d 'Leave large objects out'
complete -c weir-extract -l progress -d 'Print a progress line every few seconds even when stderr is not a terminal'
complete -c weir-extract -s q -l quiet -d 'Print nothing but errors'
complete -c weir-extract -l help -d 'Print help'
complete -c weir-extract -s V -l version -d 'Print version'
