"""``GET /api/v1/openapi.json``, built from the registered operations."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from server.api.registry import ApiOperation
from server.responses import JSONResponse

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"},
        "field": {"type": ["string", "null"]}}}},
}
ERRORS = {"401": "Not signed in", "403": "Not allowed, or CSRF token missing",
          "404": "No such resource", "409": "Conflicts with the current state",
          "413": "Body too large", "422": "Invalid input; `field` names it",
          "429": "Too many requests; see Retry-After"}
# Only where a JSON body is read (``server.http.json_object``).
BODY_ERRORS = {"400": "The body is not JSON (`invalid_json`), not sent as application/json "
                      "(`unsupported_media_type`) or nested too deep (`too_deep`)",
               "422": "Invalid input; `field` names it (text that cannot be stored: "
                      "`invalid_text`; NaN or Infinity: `invalid_number`)"}


def _error(text: str) -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}


def build(operations: list[ApiOperation], version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for op in operations:
        entry: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": f"{op.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', op.path.lower())}"
            .strip("_"),
            "responses": {str(op.success): {"description": "Success"}} | {
                code: _error(text)
                for code, text in (ERRORS | (BODY_ERRORS if op.body else {})).items()},
        }
        params = re.findall(r"{(\w+)}", op.path)
        if params:
            entry["parameters"] = [{"name": p, "in": "path", "required": True,
                                    "schema": {"type": "integer"}} for p in params]
        if op.body is not None:
            schema = op.body.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in schema.pop("$defs", {}).items():
                schemas[name] = sub
            schemas[op.body.__name__] = schema
            entry["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}}}}
        if not op.anonymous:
            entry["security"] = [{"session": []}]
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "Mendwell API", "version": version,
                 "description": "Session-cookie authentication; send X-CSRF-Token from "
                                "GET /api/v1/session on every state-changing request."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"session": {
            "type": "apiKey", "in": "cookie", "name": "mendwell_session"}}},
    }


def endpoint(operations: list[ApiOperation], version: str) -> Any:
    document = build(operations, version)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    return openapi
