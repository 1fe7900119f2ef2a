"""`schoolgate`: one module per command group."""
