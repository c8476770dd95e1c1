"""Built-in converter backends; each is an ordinary plugin registered through entry points."""
