"""The acting user of a request, as domain functions see them."""

from __future__ import annotations

from dataclasses import dataclass

from server.models import Role, User


@dataclass(frozen=True)
class Actor:
    user_id: int
    role: Role
    name: str
    email: str
    # A patient who came in through a join link may act on this one visit only.
    scope_visit_id: int | None = None
    session_id: int | None = None
    ip: str | None = None

    @classmethod
    def of(
        cls,
        user: User,
        *,
        scope_visit_id: int | None = None,
        session_id: int | None = None,
        ip: str | None = None,
    ) -> Actor:
        return cls(user.id, user.role, user.name, user.email, scope_visit_id, session_id, ip)

    @property
    def is_staff(self) -> bool:
        return self.role.is_staff


SYSTEM = Actor(user_id=0, role=Role.admin, name="Mendwell", email="system@mendwell.local")
