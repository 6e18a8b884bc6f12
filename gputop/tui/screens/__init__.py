"""Modal screens: the key help, the kill confirmation and a replay's go-to box."""
