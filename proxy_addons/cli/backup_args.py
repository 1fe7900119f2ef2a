"""The `schoolgate backup` and `schoolgate restore` commands' arguments (their work is in
cli/backup.py, loaded only when one runs, as main.py does for every command).

`schoolgate backup --to DIR` makes an archive as before; its subcommands `key-new`,
`verify` and `copy` deal with sealing and the off-box copy (docs/backup.md)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

Commands = argparse._SubParsersAction  # type: ignore[type-arg]
StoreArgs = Callable[[argparse.ArgumentParser], argparse.ArgumentParser]


def _key_file(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--key-file",
        default=os.environ.get("SCHOOLGATE_BACKUP_KEY_FILE") or None,
        help="the key (schoolgate backup key-new) or passphrase file that seals archives "
        "(default: $SCHOOLGATE_BACKUP_KEY_FILE)",
    )


def _offsite(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--offsite",
        default=os.environ.get("SCHOOLGATE_BACKUP_OFFSITE") or None,
        help="copy the sealed archive there with rsync: user@host:/path/ or a folder "
        "(default: $SCHOOLGATE_BACKUP_OFFSITE)",
    )


def add_backup(sub: Commands, store_args: StoreArgs) -> None:
    make = sub.add_parser("backup", help="back up the store, configuration, CA and audit trail")
    make.add_argument("--to", help="folder for the archive")
    make.add_argument("--keep", type=int, default=None, help="then keep only the newest N")
    _key_file(make)
    _offsite(make)
    msub = make.add_subparsers(dest="backup_command", required=False)

    key = msub.add_parser("key-new", help="make a key to seal backups; keep a copy off the box")
    key.add_argument("--out", required=True, help="the key file to write (not overwritten)")
    key.set_defaults(handler="backup:cmd_backup_key_new")

    verify = msub.add_parser("verify", help="check an archive without restoring it")
    verify.add_argument("archive")
    _key_file(verify)
    verify.set_defaults(handler="backup:cmd_backup_verify")

    copy = msub.add_parser("copy", help="copy a sealed archive off the box (rsync)")
    copy.add_argument("archive")
    copy.add_argument("--var", default=os.environ.get("SCHOOLGATE_VAR", "var"))
    _offsite(copy)
    copy.set_defaults(handler="backup:cmd_backup_copy")

    back = sub.add_parser("restore", help="restore a backup (the gateway must be stopped)")
    back.add_argument("archive")
    back.add_argument(
        "--force", action="store_true", help="replace an existing store and differing files"
    )
    _key_file(back)
    for p in (make, back):
        store_args(p).add_argument("--ca-dir", help="the CA folder, if not VAR/ca")
    make.set_defaults(handler="backup:cmd_backup")
    back.set_defaults(handler="backup:cmd_restore")


__all__ = ["add_backup"]
