"""HTTP: the REST blueprint under /v1 (thin views), and the site routes (health, OpenAPI, /client)."""
