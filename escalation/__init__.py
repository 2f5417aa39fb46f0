"""Escalations: triage rules as data, lifecycle, deadlines and notifications."""
