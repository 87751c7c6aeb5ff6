// The API reference page (/docs/): Swagger UI renders the server's own /openapi.json.
// A file of its own, not an inline script, so the page works under `script-src 'self'`.
"use strict";

window.ui = SwaggerUIBundle({
  url: "../openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  // Swagger UI would otherwise send the document to an online validator for its badge.
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
