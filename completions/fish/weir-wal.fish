# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_weir_wal_global_optspecs
    string join \n h/help V/version
end

function __fish_weir_wal_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_weir_wal_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_weir_wal_using_subcommand
    set -l cmd (__fish_weir_wal_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c weir-wal -n "__fish_weir_wal_needs_command" -s h -l help -d 'Print help'
complete -c weir-wal -n "__fish_weir_wal_needs_command" -s V -l version -d 'Print version'
complete -c weir-wal -n "__fish_weir_wal_needs_command" -f -a "push" -d 'Archive one WAL file (archive_command: %p). Exit 0 only once it is durable; an identical file already archived is success, different content is exit 5'
complete -c weir-wal -n "__fish_weir_wal_needs_command" -f -a "fetch" -d 'Restore one WAL file (restore_command: %f %p). Exit 1 only when the repository holds no such file; every other failure is exit 255, which stops recovery'
complete -c weir-wal -n "__fish_weir_wal_needs_command" -f -a "ls" -d 'List the archived files: TIMELINE KIND SIZE NAME, or JSON'
complete -c weir-wal -n "__fish_weir_wal_needs_command" -f -a "verify" -d 'Check that the archive is complete: every timeline from its first segment to its last, or --range START..STOP; exit 4 naming what is missing. --deep also reads every segment back (exit 3 if one is damaged)'
complete -c weir-wal -n "__fish_weir_wal_needs_command" -f -a "clear-spool" -d 'Remove a --prefetch spool once recovery has ended (recovery_end_command): stops its prefetcher, waits for it, and removes the segments recovery did not use'
complete -c weir-wal -n "__fish_weir_wal_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand push" -l repo -d 'The repository: s3://BUCKET/PREFIX, file:///PATH or PATH' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand push" -l endpoint -d 'S3-compatible endpoint, such as http://localhost:9000 (default: AWS_ENDPOINT_URL, the profile\'s endpoint_url, or AWS itself). A custom endpoint uses path-style addressing' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand push" -l region -d 'Region (default: AWS_REGION, the profile, or us-east-1 for a custom endpoint)' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand push" -l profile -d 'Named profile from ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE)' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand push" -l attempts -d 'Attempts per request before giving up, the first included; retries back off exponentially with jitter' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand push" -s l -l level -d 'zstd level (1 to 19)' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand push" -s r -l recipient -d 'Encrypt to RECIPIENT (age1... or an SSH public key; repeatable)' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand push" -s R -l recipients-file -d 'Encrypt to the recipients listed in FILE (repeatable)' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand push" -l parallel -d 'Start a background process that pushes the files the server has marked ready, N at once; the server\'s calls for them then return at once (needs --spool)' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand push" -l spool -d 'A directory of our own (outside pg_wal) for the notes --parallel and --prefetch keep' -r -F
complete -c weir-wal -n "__fish_weir_wal_using_subcommand push" -l metrics -d 'After each push, write Prometheus textfile metrics to FILE: the last archived file and its time, the last push\'s outcome, failures so far' -r -F
complete -c weir-wal -n "__fish_weir_wal_using_subcommand push" -l virtual-hosted -d 'Virtual-hosted-style addressing (bucket.host) even for a custom endpoint'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand push" -s v -l verbose -d 'On a storage error, also print what the AWS SDK said (its credential chain\'s complaints, the HTTP exchange\'s cause)'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand push" -l no-compress -d 'Store the files uncompressed'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand push" -s h -l help -d 'Print help'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand fetch" -l repo -d 'The repository: s3://BUCKET/PREFIX, file:///PATH or PATH' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand fetch" -l endpoint -d 'S3-compatible endpoint, such as http://localhost:9000 (default: AWS_ENDPOINT_URL, the profile\'s endpoint_url, or AWS itself). A custom endpoint uses path-style addressing' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand fetch" -l region -d 'Region (default: AWS_REGION, the profile, or us-east-1 for a custom endpoint)' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand fetch" -l profile -d 'Named profile from ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE)' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand fetch" -l attempts -d 'Attempts per request before giving up, the first included; retries back off exponentially with jitter' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand fetch" -s i -l identity -d 'Decrypt with the identities in FILE (repeatable)' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand fetch" -l retry-for -d 'Retry failures (the network, the service) for up to SECONDS before exit 255' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand fetch" -s D -l pgdata -d 'The data directory whose cluster must be the repository\'s (default: the working directory, the data directory when PostgreSQL runs the command)' -r -F
complete -c weir-wal -n "__fish_weir_wal_using_subcommand fetch" -l prefetch -d 'After a segment, fetch the next N-1 in the background (one worker per core) into --spool, where the server\'s calls for them find them (verified already)' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand fetch" -l spool -d 'A directory of our own (outside pg_wal) for prefetched segments' -r -F
complete -c weir-wal -n "__fish_weir_wal_using_subcommand fetch" -l virtual-hosted -d 'Virtual-hosted-style addressing (bucket.host) even for a custom endpoint'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand fetch" -s v -l verbose -d 'On a storage error, also print what the AWS SDK said (its credential chain\'s complaints, the HTTP exchange\'s cause)'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand fetch" -s N -l no-sync -d 'Rename PATH into place without syncing it first (it still appears whole or not at all). PostgreSQL removes PATH before each call and syncs a file it keeps itself'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand fetch" -s h -l help -d 'Print help'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand ls" -l repo -d 'The repository: s3://BUCKET/PREFIX, file:///PATH or PATH' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand ls" -l endpoint -d 'S3-compatible endpoint, such as http://localhost:9000 (default: AWS_ENDPOINT_URL, the profile\'s endpoint_url, or AWS itself). A custom endpoint uses path-style addressing' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand ls" -l region -d 'Region (default: AWS_REGION, the profile, or us-east-1 for a custom endpoint)' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand ls" -l profile -d 'Named profile from ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE)' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand ls" -l attempts -d 'Attempts per request before giving up, the first included; retries back off exponentially with jitter' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand ls" -l virtual-hosted -d 'Virtual-hosted-style addressing (bucket.host) even for a custom endpoint'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand ls" -s v -l verbose -d 'On a storage error, also print what the AWS SDK said (its credential chain\'s complaints, the HTTP exchange\'s cause)'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand ls" -l json -d 'One JSON array of {name, kind, timeline, size}'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand ls" -s h -l help -d 'Print help'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand verify" -l repo -d 'The repository: s3://BUCKET/PREFIX, file:///PATH or PATH' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand verify" -l endpoint -d 'S3-compatible endpoint, such as http://localhost:9000 (default: AWS_ENDPOINT_URL, the profile\'s endpoint_url, or AWS itself). A custom endpoint uses path-style addressing' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand verify" -l region -d 'Region (default: AWS_REGION, the profile, or us-east-1 for a custom endpoint)' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand verify" -l profile -d 'Named profile from ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE)' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand verify" -l attempts -d 'Attempts per request before giving up, the first included; retries back off exponentially with jitter' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand verify" -l range -d 'Only the segments from START to STOP, both included, of one timeline' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand verify" -s i -l identity -d 'Identities for --deep (repeatable)' -r
complete -c weir-wal -n "__fish_weir_wal_using_subcommand verify" -l virtual-hosted -d 'Virtual-hosted-style addressing (bucket.host) even for a custom endpoint'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand verify" -s v -l verbose -d 'On a storage error, also print what the AWS SDK said (its credential chain\'s complaints, the HTTP exchange\'s cause)'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand verify" -l deep -d 'Decrypt and decompress every segment, and check its digest and header'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand verify" -l json -d 'One line of JSON: present, missing, damaged'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand verify" -s h -l help -d 'Print help'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand clear-spool" -s h -l help -d 'Print help'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand help; and not __fish_seen_subcommand_from push fetch ls verify clear-spool help" -f -a "push" -d 'Archive one WAL file (archive_command: %p). Exit 0 only once it is durable; an identical file already archived is success, different content is exit 5'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand help; and not __fish_seen_subcommand_from push fetch ls verify clear-spool help" -f -a "fetch" -d 'Restore one WAL file (restore_command: %f %p). Exit 1 only when the repository holds no such file; every other failure is exit 255, which stops recovery'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand help; and not __fish_seen_subcommand_from push fetch ls verify clear-spool help" -f -a "ls" -d 'List the archived files: TIMELINE KIND SIZE NAME, or JSON'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand help; and not __fish_seen_subcommand_from push fetch ls verify clear-spool help" -f -a "verify" -d 'Check that the archive is complete: every timeline from its first segment to its last, or --range START..STOP; exit 4 naming what is missing. --deep also reads every segment back (exit 3 if one is damaged)'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand help; and not __fish_seen_subcommand_from push fetch ls verify clear-spool help" -f -a "clear-spool" -d 'Remove a --prefetch spool once recovery has ended (recovery_end_command): stops its prefetcher, waits for it, and removes the segments recovery did not use'
complete -c weir-wal -n "__fish_weir_wal_using_subcommand help; and not __fish_seen_subcommand_from push fetch ls verify clear-spool help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
