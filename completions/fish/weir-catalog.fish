# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_weir_catalog_global_optspecs
    string join \n h/help V/version
end

function __fish_weir_catalog_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_weir_catalog_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_weir_catalog_using_subcommand
    set -l cmd (__fish_weir_catalog_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c weir-catalog -n "__fish_weir_catalog_needs_command" -s h -l help -d 'Print help'
complete -c weir-catalog -n "__fish_weir_catalog_needs_command" -s V -l version -d 'Print version'
complete -c weir-catalog -n "__fish_weir_catalog_needs_command" -f -a "add" -d 'Record the backup at URL as complete, from the --stats files its stages wrote; prints its SIZE ROWS TABLES. Never replaces an entry (exit status 5)'
complete -c weir-catalog -n "__fish_weir_catalog_needs_command" -f -a "pick" -d 'Print the URL of the base backup a point-in-time recovery starts from: the newest complete one under PREFIX that ended before the target (exit status 4 if none)'
complete -c weir-catalog -n "__fish_weir_catalog_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand add" -l kind -d 'database (a weir archive), globals (pg_dumpall --globals-only SQL) or physical (a weir-basebackup stream)' -r -f -a "database\t''
globals\t''
physical\t''"
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand add" -l started -d 'When the backup started, in Unix seconds (date +%s.%N); the duration runs to now' -r
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand add" -l object-stats -d 'The stats weir-put --stats wrote for URL' -r
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand add" -l archive-stats -d 'The stats weir-extract --stats (or weir-mask --stats) wrote; database backups only' -r
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand add" -l backup-stats -d 'The stats weir-basebackup --stats wrote; physical backups only' -r
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand add" -l compression -d 'How the object is compressed: zstd or none' -r
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand add" -l encryption -d 'How it is encrypted: age, age-passphrase or none' -r
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand add" -l source -d 'The instance it came from, as host:port' -r
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand add" -l endpoint -d 'S3-compatible endpoint, such as http://localhost:9000 (default: AWS_ENDPOINT_URL, the profile\'s endpoint_url, or AWS itself). A custom endpoint uses path-style addressing' -r
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand add" -l region -d 'Region (default: AWS_REGION, the profile, or us-east-1 for a custom endpoint)' -r
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand add" -l profile -d 'Named profile from ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE)' -r
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand add" -l attempts -d 'Attempts per request before giving up, the first included; retries back off exponentially with jitter' -r
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand add" -l virtual-hosted -d 'Virtual-hosted-style addressing (bucket.host) even for a custom endpoint'
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand add" -s v -l verbose -d 'On a storage error, also print what the AWS SDK said (its credential chain\'s complaints, the HTTP exchange\'s cause)'
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand add" -s h -l help -d 'Print help'
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand pick" -l target-time -d 'The recovery target time, with its zone (\'2026-12-01 10:00:00+00\')' -r
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand pick" -l target-lsn -d 'The recovery target LSN' -r
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand pick" -l target-timeline -d 'The recovery target timeline, as a number' -r
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand pick" -l endpoint -d 'S3-compatible endpoint, such as http://localhost:9000 (default: AWS_ENDPOINT_URL, the profile\'s endpoint_url, or AWS itself). A custom endpoint uses path-style addressing' -r
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand pick" -l region -d 'Region (default: AWS_REGION, the profile, or us-east-1 for a custom endpoint)' -r
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand pick" -l profile -d 'Named profile from ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE)' -r
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand pick" -l attempts -d 'Attempts per request before giving up, the first included; retries back off exponentially with jitter' -r
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand pick" -l virtual-hosted -d 'Virtual-hosted-style addressing (bucket.host) even for a custom endpoint'
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand pick" -s v -l verbose -d 'On a storage error, also print what the AWS SDK said (its credential chain\'s complaints, the HTTP exchange\'s cause)'
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand pick" -s h -l help -d 'Print help'
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand help; and not __fish_seen_subcommand_from add pick help" -f -a "add" -d 'Record the backup at URL as complete, from the --stats files its stages wrote; prints its SIZE ROWS TABLES. Never replaces an entry (exit status 5)'
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand help; and not __fish_seen_subcommand_from add pick help" -f -a "pick" -d 'Print the URL of the base backup a point-in-time recovery starts from: the newest complete one under PREFIX that ended before the target (exit status 4 if none)'
complete -c weir-catalog -n "__fish_weir_catalog_using_subcommand help; and not __fish_seen_subcommand_from add pick help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
