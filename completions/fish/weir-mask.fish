complete -c weir-mask -s c -l config -d 'The rules (TOML): per table, per column, chains of transformers; row filters; tables whose data is dropped' -r
complete -c weir-mask -l key-file -d 'Read the masking key from the first line of FILE (else WEIR_MASK_KEY): with a key, every pseudonym depends only on key, rule and original value' -r
complete -c weir-mask -l preview -d 'Print, for the first N rows of each masked table, the masked columns before and after, instead of writing an archive' -r
complete -c weir-mask -s o -l output -d 'Write to FILE instead of standard output' -r
complete -c weir-mask -l stats -d 'Once the output archive is complete, write what it holds (database, tables, rows left after filters, bytes, masking) as one line of JSON to FILE' -r
complete -c weir-mask -l schema-from -d 'For a change stream: the archive (a schema-only one is enough) whose tables, columns and foreign keys the rules are compiled against' -r
complete -c weir-mask -l verify -d 'Also verify the chunks of tables that pass through unchanged. By default their bytes go on unhashed, under the digests weir-extract computed, which weir-load and weir-inspect --verify check; every table that is rewritten is always verified first'
complete -c weir-mask -l keep-role-passwords -d 'Keep the roles\' password verifiers (SCRAM or MD5 hashes) in an archive with globals. By default they are removed, as pg_dumpall --no-role-passwords leaves them out: the roles are restored without passwords'
complete -c weir-mask -l validate -d 'Print, per table, the rules, the columns without one (marked when their name or type looks personal), the constraints a rule may break, and a sample of before and after (--preview N rows, default 3), instead of writing an archive'
complete -c weir-mask -l strict -d 'Refuse (exit 2, before any output) a column without a rule whose name or type looks personal, any column that the rules of its table neither mask nor list in keep, and large objects without a [large_objects] rule'
complete -c weir-mask -s h -l help -d 'Print help (see more with \'--help\')'
complete -c weir-mask -s V -l version -d 'Print version'
