// Starts Swagger UI on this server's OpenAPI document. A file of its own, not inline in the
// page, so that the page's Content-Security-Policy can refuse every inline script.
window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({
    url: '/openapi.json',
    dom_id: '#swagger-ui',
    deepLinking: true,
    tryItOutEnabled: true,
    // The API key stays in the page's memory only, not in localStorage.
    persistAuthorization: false,
    // By default the spec's URL is sent to a public validator for a badge: an outside request.
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
  });
});
