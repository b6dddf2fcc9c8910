complete -c weir-sink -s f -l file -d 'Read the stream from FILE instead of standard input' -r
complete -c weir-sink -l rotate-size -d 'Start a new file once the current one holds this many MiB' -r
complete -c weir-sink -l rotate-age -d 'Start a new file once the current one is this many seconds old' -r
complete -c weir-sink -l sync-interval -d 'Make what was written durable, and record it, at most this many milliseconds after it was written' -r
complete -c weir-sink -l format -d 'What to write: weir-cdc\'s lines as they are (wal2json), or each change in Debezium\'s envelope (before, after, source, op, ts_ms; no events for begin, commit and messages)' -r -f -a "wal2json\t''
debezium\t''"
complete -c weir-sink -l state -d 'Webhook and NATS: record the durable position in DIR/position (what weir-cdc --confirm-from file:///DIR reads), so a restart skips what was delivered. file:// keeps it in its own DIR' -r -F
complete -c weir-sink -l timeout -d 'Webhook and NATS: how long one POST, or one publish\'s acknowledgement, may take' -r
complete -c weir-sink -l retry-for -d 'Webhook: retry a POST that failed with a 5xx, 408 or 429, a timeout or a broken connection for this long, backing off, before giving up' -r
complete -c weir-sink -l max-body -d 'Webhook: the largest body; a bigger transaction is sent in parts (Weir-Part, Weir-Last-Part)' -r
complete -c weir-sink -s q -l quiet -d 'Print nothing but errors'
complete -c weir-sink -s h -l help -d 'Print help (see more with \'--help\')'
complete -c weir-sink -s V -l version -d 'Print version'
