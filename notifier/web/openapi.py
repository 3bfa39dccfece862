"""The JSON API's OpenAPI 3.1 document: one declaration, served at /api/v1/openapi.json and tested against."""

from __future__ import annotations

from typing import Any

from notifier.core.stages import Stage

STAGES = [stage.value for stage in Stage]

_PROBLEM = {
    "type": "object",
    "required": ["field", "reason"],
    "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What went wrong, in one line."},
        "problems": {"type": "array", "items": {"$ref": "#/components/schemas/Problem"}},
    },
}
_WINDOW = {
    "type": "object",
    "required": ["earliest", "latest", "basis"],
    "properties": {
        "earliest": {"type": "string", "format": "date"},
        "latest": {"type": "string", "format": "date"},
        "basis": {
            "enum": ["prior", "lane"],
            "description": "prior: Japan Post's published times; lane: this shop's deliveries",
        },
    },
}
_EVENT = {
    "type": "object",
    "required": ["when", "status", "stage"],
    "properties": {
        "when": {
            "type": "string",
            "description": "Local time as Japan Post prints it: YYYY-MM-DDTHH:MM or YYYY-MM-DD",
        },
        "status": {"type": "string"},
        "stage": {"enum": STAGES},
        "details": {"type": "string"},
        "office": {"type": "string"},
    },
}
_SUMMARY_FIELDS: dict[str, Any] = {
    "number": {"type": "string"},
    "label": {"type": "string"},
    "stage": {"enum": STAGES},
    "active": {"type": "boolean", "description": "false once unwatched (the history is kept)"},
    "watched_by": {"type": "string", "description": "api, cli or config"},
    "destination": {"type": ["string", "null"]},
    "tags": {"type": "array", "items": {"type": "string"}},
    "created_at": {"type": ["string", "null"], "format": "date-time"},
    "last_polled_at": {"type": ["string", "null"], "format": "date-time"},
}
_SUMMARY = {"type": "object", "required": list(_SUMMARY_FIELDS), "properties": _SUMMARY_FIELDS}
_WATCH = {
    "type": "object",
    "required": [*_SUMMARY_FIELDS, "subscribers", "window", "window_withheld", "events"],
    "properties": {
        **_SUMMARY_FIELDS,
        "subscribers": {"type": "array", "items": {"type": "string"}},
        "window": {"oneOf": [{"$ref": "#/components/schemas/Window"}, {"type": "null"}]},
        "window_withheld": {"type": ["string", "null"], "description": "why there is no window"},
        "events": {
            "type": "array",
            "description": "The last events, newest first (at most 10)",
            "items": {"$ref": "#/components/schemas/Event"},
        },
    },
}
NEW_WATCH: dict[str, Any] = {
    "type": "object",
    "required": ["number"],
    "examples": [
        {
            "number": "EJ123456785JP",
            "subscribers": ["customer@example.com"],
            "label": "Order 1001",
            "locale": "en",
            "tags": ["ems"],
        }
    ],
    "additionalProperties": False,
    "properties": {
        "number": {
            "type": "string",
            "description": "A Japan Post tracking number (S10 like EJ123456785JP, or 11-13 digits)",
        },
        "subscribers": {"type": "array", "items": {"type": "string", "format": "email"}},
        "label": {"type": "string", "maxLength": 200},
        "locale": {"enum": ["en", "ja"], "default": "en"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "destination": {"type": "string", "pattern": "^[A-Za-z]{2}$"},
        "time_zone": {"type": "string", "description": "IANA zone for quiet hours"},
    },
}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_UNAUTHORIZED = _json("Error", "No token, or a wrong one (with WWW-Authenticate: Bearer)")
# The web face's own limits answer before the API is reached, with its small HTML error page.
_HTML = {"text/html": {"schema": {"type": "string"}}}
_TOO_MANY = {
    "description": "Over the per-client limit (60 at once, 120 a minute): wait Retry-After seconds",
    "content": _HTML,
}
_TOO_LARGE = {"description": "The body is over 16 KiB", "content": _HTML}
_NUMBER = {
    "name": "number",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "example": "EJ123456785JP",
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "notifier API",
        "version": "1",
        "description": "Watch Japan Post numbers from a shop's own scripts. Every route needs "
        "`Authorization: Bearer <token>` ([intake] api_token_file).",
    },
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}],
    "paths": {
        "/api/v1/watches": {
            "post": {
                "summary": "Watch a number (again): subscribers are added, label and tags replaced when given",
                "operationId": "createWatch",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewWatch"}}},
                },
                "responses": {
                    "201": _json("Watch", "Watched now"),
                    "200": _json("Watch", "Already watched through the API or the CLI: updated"),
                    "400": _json("Error", "The body is not a JSON object"),
                    "401": _UNAUTHORIZED,
                    "409": _json("Error", "The number is in the configuration's watchlist"),
                    "422": _json("Error", "Invalid values: each problem names its field and why"),
                    "413": _TOO_LARGE,
                    "429": _TOO_MANY,
                },
            },
            "get": {
                "summary": "The watched numbers, optionally only those in some stages",
                "operationId": "listWatches",
                "parameters": [
                    {
                        "name": "stage",
                        "in": "query",
                        "required": False,
                        "description": "A stage name; repeat it or separate with commas for several",
                        "schema": {"type": "array", "items": {"enum": STAGES}},
                        "style": "form",
                        "explode": True,
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The active watches, by number",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["watches"],
                                    "properties": {
                                        "watches": {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/WatchSummary"},
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "401": _UNAUTHORIZED,
                    "422": _json("Error", "An unknown stage name"),
                    "429": _TOO_MANY,
                },
            },
        },
        "/api/v1/watches/{number}": {
            "parameters": [_NUMBER],
            "get": {
                "summary": "One watch: stage, delivery window when there is one, last events",
                "operationId": "getWatch",
                "responses": {
                    "200": _json("Watch", "The watch (also once unwatched: active is false)"),
                    "401": _UNAUTHORIZED,
                    "404": _json("Error", "The number was never watched"),
                    "429": _TOO_MANY,
                },
            },
            "delete": {
                "summary": "Stop watching (the history is kept)",
                "operationId": "deleteWatch",
                "responses": {
                    "204": {"description": "Unwatched (or already was)"},
                    "401": _UNAUTHORIZED,
                    "404": _json("Error", "The number was never watched"),
                    "409": _json("Error", "The number is in the configuration's watchlist"),
                    "429": _TOO_MANY,
                },
            },
        },
        "/api/v1/openapi.json": {
            "get": {
                "summary": "This document (needs no token)",
                "operationId": "openapi",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                },
            }
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "NewWatch": NEW_WATCH,
            "Watch": _WATCH,
            "WatchSummary": _SUMMARY,
            "Window": _WINDOW,
            "Event": _EVENT,
            "Error": _ERROR,
            "Problem": _PROBLEM,
        },
    },
}
