"""A live local workspace on loopback, shared by the tests of a session."""
