"""The illegal tier fed and watched: `fetch.py` takes the licensed feeds the policy names
(`illegal.feeds`), `health.py` says whether the tier is fit (fresh, and more than test
entries), for the doctor, the gateway's alert and its metric. docs/illegal-content.md."""
