"""Jinja2 templates for notification emails (installed as notifier.templates)."""
