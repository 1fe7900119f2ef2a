"""Backups of a gateway (store, configuration, CA, audit trail) and restoring one.

An archive is a gzipped tar holding `manifest.json` and its members:

    store/meta.json        database kind, schema revision, row counts, audit head
    store/<table>.jsonl    every row of every table, one JSON object a line
    audit/export.json      the audit trail as `schoolgate audit export --format json`
    ca/<file>              the school's CA (mitmproxy's confdir files)
    config/policy/<path>   the policy file and every file it names, by path under its folder
    config/other/<path>    files the policy names outside its folder, by absolute path

The manifest gives each member's size and SHA-256; restore checks every one
before it writes anything, so a damaged or edited archive is refused whole.

The store is copied table by table through SQLAlchemy rather than with
sqlite3's backup API or pg_dump: the one code path works on SQLite and
PostgreSQL alike (and restores from one into the other), needs no client tools
of the server's exact version, and reads in one snapshot (a SQLite read
transaction under WAL; REPEATABLE READ on PostgreSQL), so a backup taken while
the gateway runs is consistent. Restore brings an empty database to the
archive's schema revision, loads the rows, then upgrades to this code's revision.

Archives hold the CA's private key, password hashes and the access log: they
are written readable by their owner only and must be kept like the gateway.
"""
