"""The remote parties: Japan Post over HTTP, SMTP, operator webhooks and systemd's notify socket."""
