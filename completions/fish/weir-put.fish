complete -c weir-put -s i -l input -d 'Read FILE instead of standard input' -r
complete -c weir-put -l expected-size -d 'The stream\'s approximate size, such as 800G: sizes the parts evenly. Streams of any length up to S3\'s 5 TiB limit work without it' -r
complete -c weir-put -l metadata -d 'User metadata KEY=VALUE (repeatable; S3 only)' -r
complete -c weir-put -l content-type -d 'Content-Type of the object (S3 only)' -r
complete -c weir-put -l storage-class -d 'Storage class, such as STANDARD_IA or GLACIER_IR (S3 only)' -r
complete -c weir-put -l sse -d 'Server-side encryption: AES256 (SSE-S3) or aws:kms (SSE-KMS)' -r -f -a "AES256\t''
aws:kms\t''"
complete -c weir-put -l sse-kms-key-id -d 'KMS key id for SSE-KMS (implies --sse aws:kms)' -r
complete -c weir-put -l stats -d 'Once the object is complete, write its address and size as one line of JSON to FILE (backup.sh nests it into the catalog entry)' -r
complete -c weir-put -l memory -d 'Memory budget of the whole process, such as 64M or 1G (at least 36M): peak RSS stays under it. All but 20 MiB of it holds part buffers: the parts in flight plus the one being filled (or written). Parts start at 8 MiB and double every 1,000 parts; once a part is larger than half the buffers, two parts are the floor' -r
complete -c weir-put -s j -l jobs -d 'At most N requests at once (within --memory)' -r
complete -c weir-put -l endpoint -d 'S3-compatible endpoint, such as http://localhost:9000 (default: AWS_ENDPOINT_URL, the profile\'s endpoint_url, or AWS itself). A custom endpoint uses path-style addressing' -r
complete -c weir-put -l region -d 'Region (default: AWS_REGION, the profile, or us-east-1 for a custom endpoint)' -r
complete -c weir-put -l profile -d 'Named profile from ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE)' -r
complete -c weir-put -l attempts -d 'Attempts per request before giving up, the first included; retries back off exponentially with jitter' -r
complete -c weir-put -l if-none-match -d 'Create only: fail (exit status 5) if the object already exists'
complete -c weir-put -l progress -d 'Print progress lines on stderr even when it is not a terminal (for logs)'
complete -c weir-put -s q -l quiet -d 'Print nothing but errors'
complete -c weir-put -l virtual-hosted -d 'Virtual-hosted-style addressing (bucket.host) even for a custom endpoint'
complete -c weir-put -s v -l verbose -d 'On a storage error, also print what the AWS SDK said (its credential chain\'s complaints, the HTTP exchange\'s cause)'
complete -c weir-put -s h -l help -d 'Print help'
complete -c weir-put -s V -l version -d 'Print version'
