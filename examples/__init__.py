"""Example applications that use the limiter (not part of the installed package)."""
