//! A body of any content type, passed through as bytes in both directions: what a client sends
//! to a model (`application/json`, `text/csv`, ...) and what the model answers.

use poem::{IntoResponse, Request, RequestBody, Response, Result};
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{
    MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry,
};
use poem_openapi::{ApiResponse, impl_apirequest_for_payload};

pub struct RawPayload {
    pub content_type: String,
    pub body: Vec<u8>,
}

fn binary_schema() -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        format: Some("binary"),
        ..MetaSchema::new("string")
    }))
}

impl Payload for RawPayload {
    const CONTENT_TYPE: &'static str = "*/*";

    fn check_content_type(_content_type: &str) -> bool {
        true
    }

    fn schema_ref() -> MetaSchemaRef {
        binary_schema()
    }
}

impl ParsePayload for RawPayload {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> Result<Self> {
        let content_type = request
            .content_type()
            .unwrap_or("application/octet-stream")
            .to_string();
        let body = body.take()?.into_vec().await?;
        Ok(RawPayload { content_type, body })
    }
}

impl_apirequest_for_payload!(RawPayload);

impl IntoResponse for RawPayload {
    fn into_response(self) -> Response {
        Response::builder()
            .content_type(self.content_type)
            .body(self.body)
    }
}

impl ApiResponse for RawPayload {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "The model's answer, with the model's content type.",
                status: Some(200),
                status_range: None,
                content: vec![
                    // A JSON answer is any JSON value (validators parse it as JSON).
                    MetaMediaType {
                        content_type: "application/json",
                        schema: MetaSchemaRef::Inline(Box::new(MetaSchema::ANY)),
                    },
                    MetaMediaType {
                        content_type: "*/*",
                        schema: binary_schema(),
                    },
                ],
                headers: vec![],
            }],
        }
    }

    fn register(_registry: &mut Registry) {}
}
