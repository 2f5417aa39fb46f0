"""WebSocket signaling for video visits."""
