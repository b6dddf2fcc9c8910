complete -c weir-get -s o -l output -d 'Write to FILE instead of standard output' -r
complete -c weir-get -l memory -d 'Memory budget of the whole process, such as 64M or 1G (at least 36M): peak RSS stays under it. All but 20 MiB of it holds part buffers: the parts in flight plus the one being filled (or written). Parts start at 8 MiB and double every 1,000 parts; once a part is larger than half the buffers, two parts are the floor' -r
complete -c weir-get -s j -l jobs -d 'At most N requests at once (within --memory)' -r
complete -c weir-get -l endpoint -d 'S3-compatible endpoint, such as http://localhost:9000 (default: AWS_ENDPOINT_URL, the profile\'s endpoint_url, or AWS itself). A custom endpoint uses path-style addressing' -r
complete -c weir-get -l region -d 'Region (default: AWS_REGION, the profile, or us-east-1 for a custom endpoint)' -r
complete -c weir-get -l profile -d 'Named profile from ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE)' -r
complete -c weir-get -l attempts -d 'Attempts per request before giving up, the first included; retries back off exponentially with jitter' -r
complete -c weir-get -l progress -d 'Print progress lines on stderr even when it is not a terminal (for logs)'
complete -c weir-get -s q -l quiet -d 'Print nothing but errors'
complete -c weir-get -l virtual-hosted -d 'Virtual-hosted-style addressing (bucket.host) even for a custom endpoint'
complete -c weir-get -s v -l verbose -d 'On a storage error, also print what the AWS SDK said (its credential chain\'s complaints, the HTTP exchange\'s cause)'
complete -c weir-get -s h -l help -d 'Print help'
complete -c weir-get -s V -l version -d 'Print version'
