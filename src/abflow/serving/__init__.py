"""The HTTP gateway: app factory, routers, model backends, batching, cache and event logging."""
