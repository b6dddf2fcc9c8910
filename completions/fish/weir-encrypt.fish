complete -c weir-encrypt -s r -l recipient -d 'Encrypt to RECIPIENT: an age1... key or an ssh-ed25519 / ssh-rsa public key (repeatable; WEIR_AGE_RECIPIENTS adds more)' -r
complete -c weir-encrypt -s R -l recipients-file -d 'Encrypt to every recipient listed in FILE, one per line (repeatable)' -r
complete -c weir-encrypt -s i -l identity -d 'Decrypt with the identities in FILE: an age identity file or an unencrypted SSH private key (repeatable; WEIR_AGE_IDENTITY_FILE adds one)' -r
complete -c weir-encrypt -l passphrase-file -d 'Read the passphrase from the first line of FILE (implies -p when encrypting)' -r
complete -c weir-encrypt -s o -l output -d 'Write to FILE instead of standard output' -r
complete -c weir-encrypt -s d -l decrypt -d 'Decrypt'
complete -c weir-encrypt -s p -l passphrase -d 'Encrypt with a passphrase (scrypt) instead of recipients. The passphrase comes from --passphrase-file, WEIR_PASSPHRASE, or a prompt on the terminal'
complete -c weir-encrypt -s a -l armor -d 'Write ASCII-armored (PEM) output instead of binary'
complete -c weir-encrypt -s h -l help -d 'Print help'
complete -c weir-encrypt -s V -l version -d 'Print version'
