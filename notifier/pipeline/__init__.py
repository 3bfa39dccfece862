"""Where the pure core meets the shells: polling, cycles, the outbox drain, alerts and their wiring."""
