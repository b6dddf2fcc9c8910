complete -c weir-basebackup -s d -l dbname -d 'Same as the DBNAME argument' -r
complete -c weir-basebackup -s h -l host -d 'Server host name or Unix-socket directory (overrides the conninfo and PGHOST)' -r
complete -c weir-basebackup -s p -l port -d 'Server port (overrides the conninfo and PGPORT)' -r
complete -c weir-basebackup -s U -l username -d 'User name (overrides the conninfo and PGUSER). Passwords never go on the command line: use PGPASSWORD, PGPASSFILE or ~/.pgpass' -r
complete -c weir-basebackup -s f -l file -d 'Write the stream to FILE instead of standard output' -r
complete -c weir-basebackup -s l -l label -d 'The backup label (pg_basebackup -l)' -r
complete -c weir-basebackup -s c -l checkpoint -d 'fast: checkpoint at once; spread: at the server\'s pace (the default, as pg_basebackup)' -r -f -a "fast\t''
spread\t''"
complete -c weir-basebackup -l repo -d 'The weir-wal repository this cluster archives to: it must be this cluster\'s, and the backup\'s WAL must be in it before the backup succeeds' -r
complete -c weir-basebackup -l endpoint -d 'S3-compatible endpoint, such as http://localhost:9000 (default: AWS_ENDPOINT_URL, the profile\'s endpoint_url, or AWS itself). A custom endpoint uses path-style addressing' -r
complete -c weir-basebackup -l region -d 'Region (default: AWS_REGION, the profile, or us-east-1 for a custom endpoint)' -r
complete -c weir-basebackup -l profile -d 'Named profile from ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE)' -r
complete -c weir-basebackup -l attempts -d 'Attempts per request before giving up, the first included; retries back off exponentially with jitter' -r
complete -c weir-basebackup -l stats -d 'Once the stream is complete, write what it holds (cluster, timeline, start and stop LSN and WAL, files, bytes, seconds) as one line of JSON to FILE' -r
complete -c weir-basebackup -l pgdata -d 'Read the files from the data directory DIR on this host (between pg_backup_start and pg_backup_stop on an ordinary connection, as pgBackRest does) instead of through the replication protocol; DIR must be the server\'s data_directory' -r -F
complete -c weir-basebackup -s j -l jobs -d 'With --pgdata: files read at once' -r
complete -c weir-basebackup -l incremental-from -d 'With --pgdata: an incremental backup against the backup whose backup_manifest is FILE (the parent\'s --manifest-file): of each relation file the parent held, only the blocks written since the parent started' -r -F
complete -c weir-basebackup -l manifest-file -d 'Once the backup is complete, write a copy of its backup_manifest to FILE: what the next --incremental-from names' -r -F
complete -c weir-basebackup -l virtual-hosted -d 'Virtual-hosted-style addressing (bucket.host) even for a custom endpoint'
complete -c weir-basebackup -s v -l verbose -d 'On a storage error, also print what the AWS SDK said (its credential chain\'s complaints, the HTTP exchange\'s cause)'
complete -c weir-basebackup -s P -l progress -d 'Print a progress line every few seconds even when stderr is not a terminal'
complete -c weir-basebackup -s q -l quiet -d 'Print nothing but errors'
complete -c weir-basebackup -l help -d 'Print help'
complete -c weir-basebackup -s V -l version -d 'Print version'
