// Starts Swagger UI on the API documentation page (a file, not an inline script: the CSP forbids those).
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("swagger-ui");
    if (!root || !window.SwaggerUIBundle) { return; }
    window.SwaggerUIBundle({
      url: root.getAttribute("data-spec-url"),
      domNode: root,
      deepLinking: false,
      validatorUrl: null,
      tryItOutEnabled: false,
      supportedSubmitMethods: ["get"]
    });
  });
})();
