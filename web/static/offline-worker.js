// The offline page for the visit room. note-panel.js registers this worker for
// /visits/ (it is served from /visits/offline-worker.js for that scope).
//
// Only when the server cannot be reached at all does a visit room page load get the
// offline page instead: a static shell with no patient data in it, which shows the
// note text this browser keeps (note-store.js) so the prescriber can go on writing,
// and goes back to the visit as soon as the server answers. Everything else goes to
// the network untouched; nothing the server sends is cached.

const CACHE = "mendwell-offline-v2";
const SHELL = "/static/note-offline.html";
const ASSETS = [SHELL, "/static/note-offline.js", "/static/note-store.js",
  "/static/note-editor.js", "/static/vocabulary.js", "/static/app.css"];
const ROOM = /^\/visits\/\d+$/;

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(ASSETS))
    .then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) {
      if (key !== CACHE) await caches.delete(key);
    }
    await self.clients.claim();
  })());
});

async function shell() {
  return caches.match(SHELL);
}

async function room(request) {
  try {
    const response = await fetch(request);
    // A proxy in front of a stopped app answers 502-504: that is offline too.
    if (response.status >= 502 && response.status <= 504) return (await shell()) || response;
    return response;
  } catch {
    return (await shell()) || Response.error();
  }
}

async function asset(request, path) {
  try {
    return await fetch(request);
  } catch {
    return (await caches.match(path)) || Response.error();
  }
}

self.addEventListener("fetch", (event) => {
  const { request } = event;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin || request.method !== "GET") return;
  if (request.mode === "navigate" && ROOM.test(url.pathname)) {
    event.respondWith(room(request));
  } else if (ASSETS.includes(url.pathname)) {
    event.respondWith(asset(request, url.pathname));
  }
});
