"""Nobody waits unseen: the background task that alerts coordinators about long waits."""

from __future__ import annotations

import asyncio
import logging

from server import visits
from server.services import Services

log = logging.getLogger("mendwell.signaling.waiting")


async def alert_long_waits_once(services: Services) -> list[int]:
    async with services.transaction() as session:
        return await visits.alert_long_waits(session, now=services.clock.now())


async def run_waiting_alerts(services: Services) -> None:
    """Background loop started by the app's lifespan (every instance may run it)."""
    while True:
        try:
            alerted = await alert_long_waits_once(services)
            if alerted:
                log.info("long-wait alerts sent for visits %s", alerted)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("long-wait alerts failed; retrying")
        await asyncio.sleep(services.settings.waiting_alert_poll_seconds)
