complete -c weir-compress -l level -d 'Compression level: -1 to -19 (written as -N, as with zstd); gzip uses 1 to 9' -r
complete -c weir-compress -l fast -d 'Faster than -1, at a lower ratio (zstd negative levels)' -r
complete -c weir-compress -s T -l threads -d 'Threads (zstd), compressing or decompressing: zstd is written as independent frames of 4 MiB that many threads work on at once (one frame with --long); default: the number of cores, at most 4' -r
complete -c weir-compress -l long -d 'Long-distance matching with a 2^WLOG window (default 27); `zstd -d` then needs --long=WLOG (or --memory) to decompress' -r
complete -c weir-compress -l format -d 'Output format when compressing' -r -f -a "zstd\t''
lz4\t''
gzip\t''"
complete -c weir-compress -s o -l output -d 'Write to FILE instead of standard output' -r
complete -c weir-compress -s d -l decompress -d 'Decompress; the format (zstd, lz4, gzip, bzip2) is detected from the data'
complete -c weir-compress -s c -l stdout -d 'Write to standard output (the default; accepted for zstd and gzip habits)'
complete -c weir-compress -s h -l help -d 'Print help (see more with \'--help\')'
complete -c weir-compress -s V -l version -d 'Print version'
