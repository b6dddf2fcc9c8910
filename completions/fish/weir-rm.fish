complete -c weir-rm -l endpoint -d 'S3-compatible endpoint, such as http://localhost:9000 (default: AWS_ENDPOINT_URL, the profile\'s endpoint_url, or AWS itself). A custom endpoint uses path-style addressing' -r
complete -c weir-rm -l region -d 'Region (default: AWS_REGION, the profile, or us-east-1 for a custom endpoint)' -r
complete -c weir-rm -l profile -d 'Named profile from ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE)' -r
complete -c weir-rm -l attempts -d 'Attempts per request before giving up, the first included; retries back off exponentially with jitter' -r
complete -c weir-rm -s r -l recursive -d 'Delete every object whose key starts with URL'
complete -c weir-rm -s f -l force -d 'No error when nothing matches'
complete -c weir-rm -s q -l quiet -d 'Do not print what was deleted'
complete -c weir-rm -l virtual-hosted -d 'Virtual-hosted-style addressing (bucket.host) even for a custom endpoint'
complete -c weir-rm -s v -l verbose -d 'On a storage error, also print what the AWS SDK said (its credential chain\'s complaints, the HTTP exchange\'s cause)'
complete -c weir-rm -s h -l help -d 'Print help'
complete -c weir-rm -s V -l version -d 'Print version'
