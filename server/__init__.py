"""Mendwell server: settings, database, auth, access, audit, outbox, API and CLI."""
