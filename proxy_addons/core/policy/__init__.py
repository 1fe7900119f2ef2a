"""The policy: its typed model, reading and validating the YAML, and the policy in force."""
