/// The native API's OpenAPI 3.1 description, served at `/openapi.json`. Tests check real responses against
/// these schemas, so a change to a response that is not made here fails them.
enum OpenAPIDocument {
    static let json = #"""
{
  "openapi": "3.1.0",
  "info": {"title": "unclip serve — native API", "version": "0.7.0",
           "description": "Generations, search and the job queue of an UnCLIP store. AUTOMATIC1111's /sdapi/v1 and OpenAI's /v1/images are served beside it with their own shapes. With API keys, send Authorization: Bearer KEY (or HTTP Basic with the key as password)."},
  "components": {
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}, "basic": {"type": "http", "scheme": "basic"}},
    "schemas": {
      "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["message", "field", "status"],
        "properties": {"message": {"type": "string"}, "field": {"type": ["string", "null"]}, "status": {"type": "integer"}}}}},
      "Parent": {"type": "object", "required": ["role", "id", "exists"], "properties": {"role": {"type": "string"}, "id": {"type": "integer"}, "exists": {"type": "boolean"}}},
      "Generation": {"type": "object",
        "required": ["id", "created_at", "kind", "prompt", "negative_prompt", "seed", "width", "height", "sha256", "model", "starred", "parents", "job", "image", "thumbnail"],
        "properties": {
          "id": {"type": "integer"}, "created_at": {"type": "string"},
          "kind": {"type": "string", "enum": ["text-to-image", "variation", "interpolation", "text-diff", "source", "edit"]},
          "prompt": {"type": ["string", "null"]}, "negative_prompt": {"type": ["string", "null"]}, "seed": {"type": ["integer", "null"]},
          "width": {"type": "integer"}, "height": {"type": "integer"}, "sha256": {"type": "string"}, "model": {"type": ["string", "null"]},
          "starred": {"type": "boolean"}, "parents": {"type": "array", "items": {"$ref": "#/components/schemas/Parent"}},
          "job": {"type": ["integer", "null"]}, "image": {"type": "string"}, "thumbnail": {"type": "string"}}},
      "GenerationDetail": {"allOf": [{"$ref": "#/components/schemas/Generation"}, {"type": "object",
        "required": ["settings", "seconds", "children", "prior", "parameters"],
        "properties": {"settings": {"type": "object"}, "seconds": {"type": ["number", "null"]}, "children": {"type": "array", "items": {"type": "integer"}},
          "prior": {"type": ["object", "null"], "required": ["scores", "chosen", "candidates"],
                    "properties": {"scores": {"type": "array", "items": {"type": "number"}}, "chosen": {"type": "integer"}, "candidates": {"type": "integer"}}},
          "parameters": {"type": "string"}}}]},
      "GenerationPage": {"type": "object", "required": ["generations", "next_cursor"], "properties": {
        "generations": {"type": "array", "items": {"$ref": "#/components/schemas/Generation"}}, "next_cursor": {"type": ["integer", "null"]}}},
      "SearchResults": {"type": "object", "required": ["results"], "properties": {"results": {"type": "array", "items": {
        "allOf": [{"$ref": "#/components/schemas/Generation"}, {"type": "object", "required": ["score"], "properties": {"score": {"type": "number"}}}]}}}},
      "Star": {"type": "object", "required": ["id", "starred"], "properties": {"id": {"type": "integer"}, "starred": {"type": "integer"}}},
      "JobRequest": {"type": "object", "required": ["kind"], "additionalProperties": false, "properties": {
        "kind": {"type": "string", "enum": ["text-to-image", "variation", "interpolate", "nudge", "edit", "regenerate"]},
        "model": {"type": "string"}, "prompt": {"type": "string"}, "negative_prompt": {"type": "string"},
        "steps": {"type": "integer"}, "guidance": {"type": "number"}, "noise_level": {"type": "integer"},
        "width": {"type": "integer"}, "height": {"type": "integer"}, "scheduler": {"type": "string", "description": "alias (euler-a, dpm++2m-karras, …), A1111 sampler name or diffusers class"},
        "seed": {"type": "integer", "description": "-1 or absent: random, drawn when the job is accepted"}, "count": {"type": "integer"},
        "prior_steps": {"type": "integer"}, "prior_guidance": {"type": "number"}, "prior_candidates": {"type": "integer"},
        "preview_every": {"type": "integer"}, "id": {"type": "integer"}, "image": {"type": "string", "description": "base64 PNG, JPEG or WebP"},
        "strength": {"type": "number"}, "mask": {"type": "string", "description": "edit: base64 inpainting mask of the image's size; white = repaint, black = keep"}, "from": {"type": ["integer", "string"]}, "to": {"type": "integer"}, "frames": {"type": "integer"},
        "toward": {"type": "string"}, "amount": {"type": "number"}}},
      "Job": {"type": "object", "required": ["id", "kind", "model", "status", "position", "progress", "eta", "generations", "error", "created_at", "started_at", "finished_at", "attempts"],
        "properties": {"id": {"type": "integer"}, "kind": {"type": "string"}, "model": {"type": ["string", "null"]},
          "status": {"type": "string", "enum": ["queued", "running", "done", "failed", "cancelled"]},
          "position": {"type": ["integer", "null"]}, "progress": {"type": "number"}, "eta": {"type": ["number", "null"]},
          "generations": {"type": "array", "items": {"type": "integer"}}, "error": {"type": ["string", "null"]},
          "created_at": {"type": "string"}, "started_at": {"type": ["string", "null"]}, "finished_at": {"type": ["string", "null"]}, "attempts": {"type": "integer"}}},
      "Queue": {"type": "object", "required": ["running", "queued"], "properties": {
        "running": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}, "queued": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}}},
      "Model": {"type": "object", "required": ["name", "family", "capabilities", "native_size", "default"], "properties": {
        "name": {"type": "string"}, "family": {"type": "string"}, "capabilities": {"type": "array", "items": {"type": "string"}},
        "native_size": {"type": "integer"}, "default": {"type": "boolean"}, "guidance": {"type": ["number", "null"]}}},
      "Health": {"type": "object", "required": ["status", "version", "models", "uptime"], "properties": {
        "status": {"type": "string"}, "version": {"type": "string"}, "models": {"type": "array", "items": {"type": "string"}}, "uptime": {"type": "number"}}}
    }
  },
  "security": [{"bearer": []}, {"basic": []}],
  "paths": {
    "/api/generations": {"get": {"summary": "Generations, newest first (cursor pagination)",
      "parameters": [{"name": "cursor", "in": "query", "schema": {"type": "integer"}}, {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
        {"name": "kind", "in": "query", "schema": {"type": "string"}, "description": "comma-separated kinds"}, {"name": "model", "in": "query", "schema": {"type": "string"}},
        {"name": "since", "in": "query", "schema": {"type": "string"}}, {"name": "starred", "in": "query", "schema": {"type": "boolean"}},
        {"name": "parent", "in": "query", "schema": {"type": "integer"}}],
      "responses": {"200": {"description": "a page", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GenerationPage"}}}},
                    "400": {"description": "bad parameter", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}},
    "/api/generations/{id}": {
      "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
      "get": {"summary": "One generation", "responses": {"200": {"description": "it", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GenerationDetail"}}}},
                                                         "404": {"description": "none", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}},
      "delete": {"summary": "Remove a generation and its image (starred ones are refused)", "responses": {"204": {"description": "removed"},
        "404": {"description": "none", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "409": {"description": "starred", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}},
    "/api/generations/{id}/image": {"parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
      "get": {"summary": "The PNG", "responses": {"200": {"description": "PNG", "content": {"image/png": {}}}}}},
    "/api/generations/{id}/thumbnail": {"parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}},
        {"name": "size", "in": "query", "schema": {"type": "integer", "minimum": 16, "maximum": 1024, "default": 256}}],
      "get": {"summary": "A PNG no larger than size on its longer side", "responses": {"200": {"description": "PNG", "content": {"image/png": {}}}}}},
    "/api/generations/{id}/star": {"parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
      "put": {"summary": "Star", "responses": {"200": {"description": "starred", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Star"}}}}}},
      "delete": {"summary": "Unstar", "responses": {"200": {"description": "unstarred", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Star"}}}}}}},
    "/api/search": {"post": {"summary": "Rank generations by meaning: a text, an uploaded image (base64) or a stored generation (like)",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "properties": {
        "text": {"type": "string"}, "image": {"type": "string"}, "like": {"type": "integer"}, "limit": {"type": "integer"}, "kind": {"type": "array", "items": {"type": "string"}}}}}}},
      "responses": {"200": {"description": "hits, best first", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SearchResults"}}}},
                    "400": {"description": "bad query", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}},
    "/api/jobs": {"post": {"summary": "Queue work", "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}}}},
      "responses": {"202": {"description": "queued", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
                    "400": {"description": "bad field", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                    "404": {"description": "an id that does not exist", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                    "413": {"description": "body too large", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                    "429": {"description": "queue full (Retry-After)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}},
    "/api/jobs/{id}": {"parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
      "get": {"summary": "A job", "responses": {"200": {"description": "it", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
                                                 "404": {"description": "none", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}},
      "delete": {"summary": "Cancel (a running job stops within one step)", "responses": {"200": {"description": "the job now", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}}}}},
    "/api/jobs/{id}/events": {"parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
      "get": {"summary": "Server-Sent Events: state, queued {position}, running, progress {stage, step, total, image, images, eta, progress}, preview {image, step, png}, image {generation, index}, warning, then done | failed | cancelled (a Job)",
              "responses": {"200": {"description": "event stream", "content": {"text/event-stream": {}}}}}},
    "/api/queue": {"get": {"summary": "Running and queued jobs, in claim order", "responses": {"200": {"description": "the queue", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Queue"}}}}}}},
    "/api/models": {"get": {"summary": "Served models", "responses": {"200": {"description": "models", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}}}}}}}},
    "/healthz": {"get": {"summary": "Liveness (no key needed)", "security": [], "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}}}},
    "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text format 0.0.4", "content": {"text/plain": {}}}}}}
  }
}
"""#
}
