complete -c weir-restore-physical -s D -l pgdata -d 'The data directory to restore into: absent or empty, unless --clear' -r -F
complete -c weir-restore-physical -l input -d 'Read the stream from FILE instead of standard input' -r
complete -c weir-restore-physical -l from -d 'Read the stored backup at URL (s3://, file:// or a path) itself, decrypting it with -i and decompressing it on several threads, instead of from standard input. Repeat it for a chain, full backup first; one incremental restores its whole chain, found in the catalog beside it, when the directory is empty. With --delta, only what differs is read from it, by range (the 1 MiB pieces of a file that differ, small files whole), where most is the same' -r
complete -c weir-restore-physical -l repo -d 'The weir-wal repository recovery fetches WAL from' -r
complete -c weir-restore-physical -l endpoint -d 'S3-compatible endpoint, such as http://localhost:9000 (default: AWS_ENDPOINT_URL, the profile\'s endpoint_url, or AWS itself). A custom endpoint uses path-style addressing' -r
complete -c weir-restore-physical -l region -d 'Region (default: AWS_REGION, the profile, or us-east-1 for a custom endpoint)' -r
complete -c weir-restore-physical -l profile -d 'Named profile from ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE)' -r
complete -c weir-restore-physical -l attempts -d 'Attempts per request before giving up, the first included; retries back off exponentially with jitter' -r
complete -c weir-restore-physical -s i -l identity -d 'The age identity file restore_command decrypts WAL with (its path goes into the setting, never its contents)' -r -F
complete -c weir-restore-physical -l restore-command -d 'Use CMD as restore_command instead of weir-wal fetch --repo URL (for a server that runs elsewhere, a container say); --repo then only checks the archive' -r
complete -c weir-restore-physical -l target-time -d 'Stop at this time (recovery_target_time), e.g. \'2026-12-01 10:00:00+00\'' -r
complete -c weir-restore-physical -l target-lsn -d 'Stop at this LSN (recovery_target_lsn)' -r
complete -c weir-restore-physical -l target-xid -d 'Stop at this transaction (recovery_target_xid)' -r
complete -c weir-restore-physical -l target-name -d 'Stop at this restore point, made with pg_create_restore_point (recovery_target_name)' -r
complete -c weir-restore-physical -l target-action -d 'What the server does at the target: pause (PostgreSQL\'s default), promote or shutdown' -r -f -a "pause\t''
promote\t''
shutdown\t''"
complete -c weir-restore-physical -l target-timeline -d 'The timeline to recover along: latest (PostgreSQL\'s default), current or an ID' -r
complete -c weir-restore-physical -s T -l tablespace-mapping -d 'Restore the tablespace at OLD into NEW (repeatable), as pg_basebackup -T' -r
complete -c weir-restore-physical -l prefetch -d 'The restore_command fetches the next N-1 segments in the background while the server replays one, into pg_wal/weir-prefetch, which recovery_end_command removes (1: one segment per call)' -r
complete -c weir-restore-physical -l clear -d 'Remove what the data directory (and each tablespace directory) holds first'
complete -c weir-restore-physical -l delta -d 'Restore over a stopped data directory of the same cluster, writing only what differs from the backup (block by block) and removing what the backup lacks (pgBackRest\'s --delta)'
complete -c weir-restore-physical -l virtual-hosted -d 'Virtual-hosted-style addressing (bucket.host) even for a custom endpoint'
complete -c weir-restore-physical -s v -l verbose -d 'On a storage error, also print what the AWS SDK said (its credential chain\'s complaints, the HTTP exchange\'s cause)'
complete -c weir-restore-physical -l target-immediate -d 'Stop as soon as the backup is consistent (recovery_target = \'immediate\')'
complete -c weir-restore-physical -l target-exclusive -d 'Stop just before the target instead of just after it (recovery_target_inclusive = off)'
complete -c weir-restore-physical -s N -l no-sync -d 'Do not sync what was written before exit (faster; a crash may then lose it)'
complete -c weir-restore-physical -s q -l quiet -d 'Print nothing but errors and warnings'
complete -c weir-restore-physical -s h -l help -d 'Print help'
complete -c weir-restore-physical -s V -l version -d 'Print version'
