complete -c weir-schedule -l run-now -d 'Run once at start too, then on the schedule'
complete -c weir-schedule -s h -l help -d 'Print help'
complete -c weir-schedule -s V -l version -d 'Print version'
