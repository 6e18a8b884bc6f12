"""Modal screens: the key help and the kill confirmation."""
