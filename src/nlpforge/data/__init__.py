"""Readers for user data files; each error names the file and line and says what to do."""
