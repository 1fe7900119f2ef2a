"""Fetch new category lists, check them, and swap them in; keep the old ones if anything fails.

`schoolgate lists update` (and its nightly timer) reads list-updates.yaml:
archives (tar, any compression) to download, each unpacked into a lists folder
such as lists/ut1. An archive is taken only when:

- its checksum matches, when one is configured (a pinned SHA-256, or a
  checksum file of "HEX  NAME" lines, SHA-256 or MD5, as list providers publish);
- it unpacks safely (tarfile's "data" filter: no absolute paths, no "..", no
  links out of the folder, no device files);
- every list the policy uses from that folder is in it and reads, and none
  shrank below `min_fraction` of its previous entries (a cut-off download or a
  broken upstream would otherwise quietly unblock a category).

Then the files are swapped in one by one with rename (the running gateway
watches the list folders and reloads by itself), the list index is rebuilt,
and if that fails the previous files go back. The outcome is written to
var/run/lists-update.json for `schoolgate doctor`.
"""
