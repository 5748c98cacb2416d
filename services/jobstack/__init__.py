"""jobstack: the engine and user_interface services and the code they share (see docs/services.md)."""
