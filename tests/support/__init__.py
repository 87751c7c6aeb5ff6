"""What unit tests, e2e tests and the benchmark share: launchers, clients, tokens, ports, services."""
