"""Server-rendered pages, templates and static ES modules."""
