//! The OpenAPI 3.1 document of the API (`GET /api/v1/openapi.json`), generated from the
//! route table ([`super::ROUTES`]) and the request and response types' JSON Schemas
//! (schemars, already used for `ferry schema`): a route cannot be served without being
//! documented, nor documented without being served.

use schemars::generate::{Contract, SchemaSettings};
use serde_json::{Map, Value, json};

use super::{PREFIX, ROUTES};

/// The document.
pub fn document() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    settings.contract = Contract::Serialize;
    let mut generator = settings.into_generator();
    let error = generator.subschema_for::<super::ApiError>();
    let mut paths: Map<String, Value> = Map::new();
    for r in ROUTES.iter() {
        let mut op = Map::new();
        op.insert("summary".into(), r.summary.into());
        op.insert(
            "operationId".into(),
            format!(
                "{}{}",
                r.method.as_str().to_lowercase(),
                r.path.replace(['/', '{', '}', '.'], "_")
            )
            .into(),
        );
        let mut params: Vec<Value> = path_params(r.path)
            .into_iter()
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        params.extend(r.query.iter().map(|(name, what)| {
            json!({"name": name, "in": "query", "required": false,
                   "description": what, "schema": {"type": "string"}})
        }));
        if r.path == "/tasks/{name}" && matches!(r.method.as_str(), "PUT" | "DELETE") {
            params.push(
                json!({"name": "If-Match", "in": "header", "required": false,
                "description": "the `sha256` of the file as read: 412 if it changed since",
                "schema": {"type": "string"}}),
            );
            params.push(
                json!({"name": "If-None-Match", "in": "header", "required": false,
                "description": "`*`: create only (412 if the task exists)",
                "schema": {"type": "string"}}),
            );
        }
        if !params.is_empty() {
            op.insert("parameters".into(), params.into());
        }
        if let Some(req) = r.request {
            let mut content = json!({"application/json": {"schema": req(&mut generator)}});
            if r.path == "/tasks/{name}" {
                content["application/yaml"] = json!({"schema": {"type": "string"}});
            }
            op.insert(
                "requestBody".into(),
                json!({"required": false, "content": content}),
            );
        }
        let mut responses = json!({
            "200": {"description": "OK",
                    "content": {"application/json": {"schema": (r.response)(&mut generator)}}},
            "default": {"description": "An error, with a stable `code`",
                        "content": {"application/json": {"schema": error.clone()}}},
        });
        if let Some(role) = r.role {
            op.insert("security".into(), json!([{"bearer": []}, {"session": []}]));
            op.insert("x-ferry-role".into(), role.as_str().into());
            responses["401"] = json!({"description": "No, bad, expired or revoked credentials"});
            responses["403"] = json!({"description": format!(
                "A role below `{}`, or a cookie-authenticated write without its CSRF token",
                role.as_str())});
        }
        op.insert("responses".into(), responses);
        paths
            .entry(format!("{PREFIX}{}", r.path))
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .expect("an object")
            .insert(r.method.as_str().to_lowercase(), Value::Object(op));
    }
    let schemas = generator.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ferry API",
            "version": crate::VERSION,
            "description": "The HTTP API of `ferry serve` (docs/api.md).",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "An API token from `ferry tokens create`"},
                "session": {"type": "apiKey", "in": "cookie", "name": super::SESSION_COOKIE,
                            "description": "A console session from POST /api/v1/login; writes also need X-CSRF-Token"},
            },
        },
    })
}

/// The `{param}` names of a path.
fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}
