complete -c weir-inspect -l table -d 'Print the rows of one table (schema.name or a unique name) as COPY text' -r
complete -c weir-inspect -l verify -d 'Verify every entry, count and digest; print one line and exit 0 only if intact'
complete -c weir-inspect -l json -d 'Print the manifest and trailer as JSON'
complete -c weir-inspect -l csv -d 'With --table, print CSV with a header line instead of COPY text'
complete -c weir-inspect -s h -l help -d 'Print help'
complete -c weir-inspect -s V -l version -d 'Print version'
