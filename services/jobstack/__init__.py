"""Code shared by the jobstack engine and user_interface services."""
