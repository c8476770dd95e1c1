"""Built-in validators."""
