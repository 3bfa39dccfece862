"""The long-running service: scheduler, reloads, disk guard and log format."""
