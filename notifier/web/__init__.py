"""The daemon's optional web face: unsubscribe, tracking page, health, metrics and the operator board."""
