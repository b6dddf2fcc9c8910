# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_weir_dedup_global_optspecs
    string join \n h/help V/version
end

function __fish_weir_dedup_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_weir_dedup_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_weir_dedup_using_subcommand
    set -l cmd (__fish_weir_dedup_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c weir-dedup -n "__fish_weir_dedup_needs_command" -s h -l help -d 'Print help'
complete -c weir-dedup -n "__fish_weir_dedup_needs_command" -s V -l version -d 'Print version'
complete -c weir-dedup -n "__fish_weir_dedup_needs_command" -f -a "push" -d 'Store standard input as backup NAME: only the chunks the repository lacks are uploaded; the backup exists once its recipe is written, last. The first push creates the repository'
complete -c weir-dedup -n "__fish_weir_dedup_needs_command" -f -a "cat" -d 'Write backup NAME (the latest), NAME@latest or NAME@STAMP to standard output, every chunk checked before it is written; a missing or damaged one is exit 3'
complete -c weir-dedup -n "__fish_weir_dedup_needs_command" -f -a "ls" -d 'List the backups: time, NAME@STAMP, size, bytes it added, BLAKE3 of the stream'
complete -c weir-dedup -n "__fish_weir_dedup_needs_command" -f -a "verify" -d 'Check that every chunk of every backup is in the repository (exit 3 naming the backups that are not whole); --deep also reads each back and checks it'
complete -c weir-dedup -n "__fish_weir_dedup_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand push" -l endpoint -d 'S3-compatible endpoint, such as http://localhost:9000 (default: AWS_ENDPOINT_URL, the profile\'s endpoint_url, or AWS itself). A custom endpoint uses path-style addressing' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand push" -l region -d 'Region (default: AWS_REGION, the profile, or us-east-1 for a custom endpoint)' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand push" -l profile -d 'Named profile from ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE)' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand push" -l attempts -d 'Attempts per request before giving up, the first included; retries back off exponentially with jitter' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand push" -s r -l recipient -d 'Encrypt to RECIPIENT (age1... or an SSH public key; repeatable)' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand push" -s R -l recipients-file -d 'Encrypt to the recipients listed in FILE (repeatable)' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand push" -l passphrase-file -d 'Read the passphrase from the first line of FILE (implies -p)' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand push" -l key-file -d 'The repository\'s key, a secret of the backup host (its first line, 16 characters or more); else WEIR_DEDUP_KEY. It names chunks and signs recipes; it decrypts nothing' -r -F
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand push" -s j -l jobs -d 'Chunks compressed, encrypted and uploaded at once' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand push" -l stats -d 'Once the backup is written, what was pushed as one line of JSON: backup, bytes, chunks, added_chunks, added_bytes, blake3, and for a weir archive its database, tables and rows' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand push" -l virtual-hosted -d 'Virtual-hosted-style addressing (bucket.host) even for a custom endpoint'
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand push" -s v -l verbose -d 'On a storage error, also print what the AWS SDK said (its credential chain\'s complaints, the HTTP exchange\'s cause)'
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand push" -s p -l passphrase -d 'Seal the repository with a passphrase instead of recipients (push, when it creates one), or open its identity with it; from --passphrase-file, WEIR_PASSPHRASE or a prompt on the terminal'
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand push" -s q -l quiet -d 'Nothing but errors on standard error'
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand push" -s h -l help -d 'Print help'
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand cat" -l endpoint -d 'S3-compatible endpoint, such as http://localhost:9000 (default: AWS_ENDPOINT_URL, the profile\'s endpoint_url, or AWS itself). A custom endpoint uses path-style addressing' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand cat" -l region -d 'Region (default: AWS_REGION, the profile, or us-east-1 for a custom endpoint)' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand cat" -l profile -d 'Named profile from ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE)' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand cat" -l attempts -d 'Attempts per request before giving up, the first included; retries back off exponentially with jitter' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand cat" -s i -l identity -d 'An identity that decrypts the chunks (repeatable); else WEIR_AGE_IDENTITY_FILE' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand cat" -l passphrase-file -d 'Read the passphrase from the first line of FILE (implies -p)' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand cat" -s j -l jobs -d 'Chunks fetched and decoded at once' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand cat" -s o -l output -d 'Write to FILE instead of standard output' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand cat" -l virtual-hosted -d 'Virtual-hosted-style addressing (bucket.host) even for a custom endpoint'
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand cat" -s v -l verbose -d 'On a storage error, also print what the AWS SDK said (its credential chain\'s complaints, the HTTP exchange\'s cause)'
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand cat" -s p -l passphrase -d 'Seal the repository with a passphrase instead of recipients (push, when it creates one), or open its identity with it; from --passphrase-file, WEIR_PASSPHRASE or a prompt on the terminal'
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand cat" -s h -l help -d 'Print help'
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand ls" -l endpoint -d 'S3-compatible endpoint, such as http://localhost:9000 (default: AWS_ENDPOINT_URL, the profile\'s endpoint_url, or AWS itself). A custom endpoint uses path-style addressing' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand ls" -l region -d 'Region (default: AWS_REGION, the profile, or us-east-1 for a custom endpoint)' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand ls" -l profile -d 'Named profile from ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE)' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand ls" -l attempts -d 'Attempts per request before giving up, the first included; retries back off exponentially with jitter' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand ls" -l virtual-hosted -d 'Virtual-hosted-style addressing (bucket.host) even for a custom endpoint'
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand ls" -s v -l verbose -d 'On a storage error, also print what the AWS SDK said (its credential chain\'s complaints, the HTTP exchange\'s cause)'
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand ls" -l json -d 'One JSON array of {backup, name, time, bytes, chunks, added_chunks, added_bytes, blake3}'
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand ls" -s h -l help -d 'Print help'
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand verify" -l endpoint -d 'S3-compatible endpoint, such as http://localhost:9000 (default: AWS_ENDPOINT_URL, the profile\'s endpoint_url, or AWS itself). A custom endpoint uses path-style addressing' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand verify" -l region -d 'Region (default: AWS_REGION, the profile, or us-east-1 for a custom endpoint)' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand verify" -l profile -d 'Named profile from ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE)' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand verify" -l attempts -d 'Attempts per request before giving up, the first included; retries back off exponentially with jitter' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand verify" -s i -l identity -d 'Identities for --deep (repeatable); else WEIR_AGE_IDENTITY_FILE' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand verify" -l passphrase-file -d 'Read the passphrase from the first line of FILE (implies -p)' -r
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand verify" -l virtual-hosted -d 'Virtual-hosted-style addressing (bucket.host) even for a custom endpoint'
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand verify" -s v -l verbose -d 'On a storage error, also print what the AWS SDK said (its credential chain\'s complaints, the HTTP exchange\'s cause)'
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand verify" -l deep -d 'Also read every chunk back: decrypt, decompress, check its hash; and each recipe\'s signature'
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand verify" -s p -l passphrase -d 'Seal the repository with a passphrase instead of recipients (push, when it creates one), or open its identity with it; from --passphrase-file, WEIR_PASSPHRASE or a prompt on the terminal'
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand verify" -s h -l help -d 'Print help'
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand help; and not __fish_seen_subcommand_from push cat ls verify help" -f -a "push" -d 'Store standard input as backup NAME: only the chunks the repository lacks are uploaded; the backup exists once its recipe is written, last. The first push creates the repository'
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand help; and not __fish_seen_subcommand_from push cat ls verify help" -f -a "cat" -d 'Write backup NAME (the latest), NAME@latest or NAME@STAMP to standard output, every chunk checked before it is written; a missing or damaged one is exit 3'
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand help; and not __fish_seen_subcommand_from push cat ls verify help" -f -a "ls" -d 'List the backups: time, NAME@STAMP, size, bytes it added, BLAKE3 of the stream'
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand help; and not __fish_seen_subcommand_from push cat ls verify help" -f -a "verify" -d 'Check that every chunk of every backup is in the repository (exit 3 naming the backups that are not whole); --deep also reads each back and checks it'
complete -c weir-dedup -n "__fish_weir_dedup_using_subcommand help; and not __fish_seen_subcommand_from push cat ls verify help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
