complete -c weir-prune -l keep-last -d 'Keep the N newest backups' -r
complete -c weir-prune -l keep-daily -d 'Keep the newest backup of each of the last N days that have one' -r
complete -c weir-prune -l keep-weekly -d 'Keep the newest backup of each of the last N ISO weeks that have one' -r
complete -c weir-prune -l keep-monthly -d 'Keep the newest backup of each of the last N months that have one' -r
complete -c weir-prune -l keep-yearly -d 'Keep the newest backup of each of the last N years that have one' -r
complete -c weir-prune -l keep-within -d 'Keep every backup younger than DURATION, such as 14d, 1y6m or 36h (y, m for months, w, d, h)' -r
complete -c weir-prune -l leftover-age -d 'Remove data objects without a catalog entry only once they are this old: a younger one may belong to a backup still finishing' -r
complete -c weir-prune -l now -d 'Count ages back from TIME (RFC 3339 or YYYY-MM-DD) instead of now: to see what a policy would do later' -r
complete -c weir-prune -l wal-repo -d 'The weir-wal repository of the base backups listed here: also remove the WAL older than the oldest kept one\'s start (timeline history files stay; with no complete base backup nothing is removed)' -r
complete -c weir-prune -l max-unused -d 'With --repack: rewrite packs, the emptiest first, until what the kept packs hold that no backup needs is at most PERCENT of them (0: every pack that holds any)' -r
complete -c weir-prune -s i -l identity -d 'With --repack: an identity that decrypts the packs (repeatable); else WEIR_AGE_IDENTITY_FILE' -r
complete -c weir-prune -s r -l recipient -d 'With --repack: encrypt the rewritten packs to RECIPIENT (repeatable)' -r
complete -c weir-prune -s R -l recipients-file -d 'With --repack: encrypt the rewritten packs to the recipients listed in FILE (repeatable)' -r
complete -c weir-prune -l passphrase-file -d 'Read the passphrase from the first line of FILE (implies -p)' -r
complete -c weir-prune -l endpoint -d 'S3-compatible endpoint, such as http://localhost:9000 (default: AWS_ENDPOINT_URL, the profile\'s endpoint_url, or AWS itself). A custom endpoint uses path-style addressing' -r
complete -c weir-prune -l region -d 'Region (default: AWS_REGION, the profile, or us-east-1 for a custom endpoint)' -r
complete -c weir-prune -l profile -d 'Named profile from ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE)' -r
complete -c weir-prune -l attempts -d 'Attempts per request before giving up, the first included; retries back off exponentially with jitter' -r
complete -c weir-prune -s n -l dry-run -d 'Show what would be removed and why, and remove nothing'
complete -c weir-prune -s q -l quiet -d 'Print nothing but errors'
complete -c weir-prune -l repack -d 'A weir-dedup repository: also rewrite the packs that hold chunks no kept backup needs, so that their space is freed. Reads packs with -i (or -p) and writes them for -r/-R (or -p), the recipients the repository is pushed to'
complete -c weir-prune -s p -l passphrase -d 'With --repack, in a passphrase repository: open its identity with a passphrase, from --passphrase-file, WEIR_PASSPHRASE or a prompt on the terminal'
complete -c weir-prune -l virtual-hosted -d 'Virtual-hosted-style addressing (bucket.host) even for a custom endpoint'
complete -c weir-prune -s v -l verbose -d 'On a storage error, also print what the AWS SDK said (its credential chain\'s complaints, the HTTP exchange\'s cause)'
complete -c weir-prune -s h -l help -d 'Print help'
complete -c weir-prune -s V -l version -d 'Print version'
