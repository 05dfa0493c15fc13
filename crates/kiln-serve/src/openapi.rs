//! The OpenAPI 3.1 document of the server, with the loaded model's inputs as a JSON schema
//! (3.1: its schemas are JSON Schema, so a nullable input is `"type": ["number", "null"]`).

use kiln_train::frame::FieldKind;
use serde_json::{json, Value};

use crate::state::LoadedModel;

fn input_schema(model: &LoadedModel) -> Value {
    let mut properties = serde_json::Map::new();
    for f in model.encoder.fields() {
        let schema = match f.kind {
            FieldKind::Numeric => json!({ "type": ["number", "null"] }),
            FieldKind::Boolean => json!({ "type": ["boolean", "null"] }),
            FieldKind::Datetime => json!({
                "type": ["number", "string", "null"],
                "description": "seconds since the epoch, or ISO 8601 text (YYYY-MM-DD, RFC 3339)",
            }),
            FieldKind::Categorical => {
                let mut values: Vec<Value> = f
                    .categories
                    .iter()
                    .map(|c| Value::String(c.clone()))
                    .collect();
                values.push(Value::Null);
                json!({ "type": ["string", "null"], "enum": values })
            }
        };
        properties.insert(f.name.clone(), schema);
    }
    let required: Vec<&str> = model
        .encoder
        .fields()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    json!({
        "type": "object",
        "description": "One row: every model input by name (null for a missing value); other keys are ignored.",
        "properties": properties,
        "required": required,
    })
}

/// A response with the Open Inference Protocol's `{"error": …}` body.
fn v2_error(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/InferError" } } },
    })
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
    })
}

/// The document for the model being served now.
pub(crate) fn document(model: &LoadedModel) -> Value {
    let predictions = if model.classification() {
        json!({
            "type": "object",
            "properties": {
                "predictions": {
                    "type": "array",
                    "description": "The most probable class label of each row.",
                    "items": { "type": ["string", "number"] },
                },
                "probabilities": {
                    "type": "array",
                    "description": format!("Per row, the probability of each class in this order: {:?}", model.label_text),
                    "items": { "type": "array", "items": { "type": "number" } },
                },
            },
            "required": ["predictions", "probabilities"],
        })
    } else {
        json!({
            "type": "object",
            "properties": {
                "predictions": { "type": "array", "items": { "type": "number" } },
            },
            "required": ["predictions"],
        })
    };
    let output_names: Vec<&str> = if model.classification() {
        vec!["predictions", "probabilities"]
    } else {
        vec!["predictions"]
    };
    let text = |description: &str| json!({ "description": description, "content": { "text/plain": { "schema": { "type": "string" } } } });
    let ok_json = |description: &str| json!({ "description": description, "content": { "application/json": { "schema": { "type": "object" } } } });
    let name_param = json!({ "name": "name", "in": "path", "required": true, "schema": { "type": "string", "enum": [model.name] } });
    let version_param = json!({ "name": "version", "in": "path", "required": true, "schema": { "type": "string" } });
    // Every prediction response carries these (docs/serving.md).
    let predict_headers = json!({
        "X-Request-Id": { "description": "The caller's X-Request-Id (up to 128 visible characters), else 32 random hex digits; the prediction log's join key for ground truth", "schema": { "type": "string" } },
        "X-Kiln-Model-Version": { "description": "The registry version that answered (absent for a model file)", "schema": { "type": "string" } },
        "X-Kiln-Arm": { "description": "Which release arm answered", "schema": { "type": "string", "enum": ["main", "canary"] } },
    });
    let request_id_param = json!({ "name": "X-Request-Id", "in": "header", "required": false, "description": "Echoed back and written to the prediction log (up to 128 visible characters)", "schema": { "type": "string", "maxLength": 128 } });
    let infer = json!({
        "summary": "Predict (Open Inference Protocol v2)",
        "parameters": [name_param, request_id_param],
        "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/InferRequest" } } } },
        "responses": {
            "200": { "description": "Outputs", "headers": predict_headers, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/InferResponse" } } } },
            "400": v2_error("Invalid input: the message names the tensor, the value and what was expected"),
            "404": v2_error("Unknown model or version"),
            "408": v2_error("Body not received within --body-timeout"),
            "413": v2_error("Body larger than --max-body"),
        },
    });
    let mut infer_version = infer.clone();
    infer_version["parameters"] = json!([name_param, version_param, request_id_param]);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": format!("kiln serve: {}", model.name),
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Predictions from a kiln model: MLflow's scoring protocol and the Open Inference Protocol v2.",
        },
        "paths": {
            "/invocations": {
                "post": {
                    "summary": "Predict (MLflow scoring protocol)",
                    "parameters": [request_id_param],
                    "requestBody": {
                        "required": true,
                        "content": {
                            "application/json": { "schema": { "$ref": "#/components/schemas/ScoringRequest" } },
                            "text/csv": { "schema": { "type": "string", "description": "A header line naming the inputs, then one row per line." } },
                        },
                    },
                    "responses": {
                        "200": { "description": "Predictions", "headers": predict_headers, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Predictions" } } } },
                        "400": error_response("Invalid input: the message names the column, the expected type and the row"),
                        "408": error_response("Body not received within --body-timeout"),
                        "413": error_response("Body larger than --max-body"),
                        "415": error_response("Content type other than application/json or text/csv"),
                    },
                },
            },
            "/v2/models/{name}/infer": { "post": infer },
            "/v2/models/{name}/versions/{version}/infer": { "post": infer_version },
            "/v2/models/{name}": { "get": { "summary": "Model metadata", "parameters": [name_param], "responses": { "200": ok_json("Name, versions, platform, inputs, outputs"), "404": v2_error("Unknown model") } } },
            "/v2/models/{name}/versions/{version}": { "get": { "summary": "Model version metadata", "parameters": [name_param, version_param], "responses": { "200": ok_json("Metadata of the loaded version"), "404": v2_error("Unknown model, or the version is not loaded") } } },
            "/v2/models/{name}/ready": { "get": { "summary": "Model readiness", "parameters": [name_param], "responses": { "200": ok_json("Ready"), "503": ok_json("Draining"), "404": v2_error("Unknown model") } } },
            "/v2/models/{name}/versions/{version}/ready": { "get": { "summary": "Model version readiness", "parameters": [name_param, version_param], "responses": { "200": ok_json("Ready"), "503": ok_json("Draining"), "404": v2_error("Unknown model, or the version is not loaded") } } },
            "/v2": { "get": { "summary": "Server metadata", "responses": { "200": ok_json("Name, version, extensions") } } },
            "/v2/health/live": { "get": { "summary": "Liveness", "responses": { "200": ok_json("Live") } } },
            "/v2/health/ready": { "get": { "summary": "Readiness (503 while draining)", "responses": { "200": ok_json("Ready"), "503": ok_json("Draining") } } },
            "/health": { "get": { "summary": "Health and the loaded model version", "responses": { "200": ok_json("Status, model, version"), "503": ok_json("Draining") } } },
            "/ping": { "get": { "summary": "MLflow's liveness check", "responses": { "200": text("A newline") } } },
            "/version": { "get": { "summary": "kiln's version", "responses": { "200": text("Version") } } },
            "/metrics": { "get": { "summary": "Prometheus metrics", "responses": { "200": text("Text exposition format 0.0.4") } } },
            "/openapi.json": { "get": { "summary": "This document", "responses": { "200": ok_json("OpenAPI 3.1") } } },
        },
        "components": {
            "schemas": {
                "Row": input_schema(model),
                "ScoringRequest": {
                    "type": "object",
                    "description": "Exactly one of the four keys.",
                    "properties": {
                        "dataframe_split": {
                            "type": "object",
                            "properties": {
                                "columns": { "type": "array", "items": { "type": "string" } },
                                "data": { "type": "array", "items": { "type": "array", "items": {} } },
                                "index": { "type": "array", "items": {} },
                            },
                            "required": ["data"],
                        },
                        "dataframe_records": { "type": "array", "items": { "$ref": "#/components/schemas/Row" } },
                        "instances": { "description": "A list of rows (objects, or lists in input order), or an object of columns.", "oneOf": [{ "type": "array", "items": {} }, { "type": "object" }] },
                        "inputs": { "description": "Like instances.", "oneOf": [{ "type": "array", "items": {} }, { "type": "object" }] },
                        "params": { "type": "object", "description": "Accepted and ignored." },
                    },
                },
                "Predictions": predictions,
                "Error": {
                    "type": "object",
                    "properties": { "error_code": { "type": "string" }, "message": { "type": "string" } },
                    "required": ["error_code", "message"],
                },
                "Tensor": {
                    "type": "object",
                    "properties": {
                        "name": { "type": "string" },
                        "shape": { "type": "array", "items": { "type": "integer" } },
                        "datatype": { "type": "string", "enum": ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"] },
                        "data": { "type": "array", "items": {} },
                    },
                    "required": ["name", "shape", "datatype", "data"],
                },
                "InferRequest": {
                    "type": "object",
                    "description": "One tensor per model input (named like the input, shape [rows] or [rows, 1]), or one [rows, inputs] tensor in input order.",
                    "properties": {
                        "id": { "type": "string" },
                        "inputs": { "type": "array", "items": { "$ref": "#/components/schemas/Tensor" } },
                        "outputs": {
                            "type": "array",
                            "description": "The outputs to return, by name (all when absent or empty).",
                            "items": { "type": "object", "properties": { "name": { "type": "string", "enum": output_names }, "parameters": { "type": "object" } }, "required": ["name"] },
                        },
                        "parameters": { "type": "object", "description": "Accepted and ignored." },
                    },
                    "required": ["inputs"],
                },
                "InferResponse": {
                    "type": "object",
                    "properties": {
                        "model_name": { "type": "string" },
                        "model_version": { "type": "string" },
                        "id": { "type": "string" },
                        "outputs": { "type": "array", "items": { "$ref": "#/components/schemas/Tensor" } },
                    },
                },
                "InferError": { "type": "object", "properties": { "error": { "type": "string" } }, "required": ["error"] },
            },
        },
    })
}
