"""Socket.IO: the event handlers, the client managers (acks, room index, Redis queue), library
corrections, per-connection deadlines, and the eventlet server loop with its graceful stop."""
