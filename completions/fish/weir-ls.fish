complete -c weir-ls -l endpoint -d 'S3-compatible endpoint, such as http://localhost:9000 (default: AWS_ENDPOINT_URL, the profile\'s endpoint_url, or AWS itself). A custom endpoint uses path-style addressing' -r
complete -c weir-ls -l region -d 'Region (default: AWS_REGION, the profile, or us-east-1 for a custom endpoint)' -r
complete -c weir-ls -l profile -d 'Named profile from ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE)' -r
complete -c weir-ls -l attempts -d 'Attempts per request before giving up, the first included; retries back off exponentially with jitter' -r
complete -c weir-ls -s c -l catalog -d 'List complete backups from their catalog entries: time, database, size, tables, rows, encryption, masking'
complete -c weir-ls -l json -d 'Print a JSON array: {key, size, modified} objects, or with --catalog the entries'
complete -c weir-ls -s H -l human-readable -d 'Sizes as 1.2 GB instead of bytes'
complete -c weir-ls -l virtual-hosted -d 'Virtual-hosted-style addressing (bucket.host) even for a custom endpoint'
complete -c weir-ls -s v -l verbose -d 'On a storage error, also print what the AWS SDK said (its credential chain\'s complaints, the HTTP exchange\'s cause)'
complete -c weir-ls -s h -l help -d 'Print help'
complete -c weir-ls -s V -l version -d 'Print version'
