"""Fault tests: Redis, PostgreSQL and the app itself stopped and restarted during writes.

Each test starts the services it breaks itself (a private redis-server, a private
PostgreSQL cluster, a ``mendwell serve`` process) on free ports, so the shared servers
other tests use are never touched. What they prove and the figures they measured are in
docs/reliability.md, "Fault tests".
"""
