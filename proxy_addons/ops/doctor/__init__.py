"""`schoolgate doctor`'s checks, one module per area: is this installation sound, and if not,
what to do. The checks only read: nothing here writes to the installation (a list index is
built in a temporary folder), so the doctor is safe to run at any time, as root too."""
