"""Real protocol peers that tests talk to over sockets (a recording SMTP smarthost, …)."""
