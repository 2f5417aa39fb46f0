// The patient's visit page hears the visit's live events over one `/ws/events` socket
// and hands each to the parts that show them: the running-late notice and the question
// about an invited guest.

import * as guestConsent from "./guest-consent.js";
import { ReconnectingSocket, socketUrl } from "./reconnecting-socket.js";
import * as runningLate from "./running-late.js";

const parts = [runningLate, guestConsent];

if (document.querySelector(".visit-room[data-visit-id]")) {
  const socket = new ReconnectingSocket(socketUrl("/ws/events"));
  socket.addEventListener("open", () => socket.markHealthy());
  socket.addEventListener("message", (event) => {
    const message = event.detail;
    for (const part of parts) {
      if (message.type === "subscribed") part.onSubscribed();
      else part.onEvent(message);
    }
  });
  socket.start();
}
