//! A JSON request body that the OpenAPI document describes with a schema `T`, but that the
//! handler receives raw, so that our own parser ([`crate::validate`]) can tell the client exactly
//! which field is wrong (400 for unknown fields, 422 for bad values) instead of a generic error.

use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, ParseResult, Type};
use serde_json::Value;
use std::borrow::Cow;
use std::marker::PhantomData;

pub struct RawBody<T> {
    pub value: Value,
    _schema: PhantomData<fn() -> T>,
}

impl<T: Type> Type for RawBody<T> {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        T::name()
    }
    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }
    fn register(registry: &mut Registry) {
        T::register(registry)
    }
    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }
    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl<T: Type> ParseFromJSON for RawBody<T> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        Ok(RawBody {
            value: value.unwrap_or(Value::Null),
            _schema: PhantomData,
        })
    }
}

/// Refuses a JSON body with a repeated key, or a NUL or control character where AWS will refuse
/// it, before any parser sees it ([`crate::validate::raw`]); the body then goes on unchanged.
/// Bodies passed through to a model (`/infer`, `/explain`) are the model's business, and
/// `function/execute` never reads its body.
pub async fn check_json<E: poem::Endpoint>(
    ep: std::sync::Arc<E>,
    mut req: poem::Request,
) -> poem::Result<poem::Response> {
    use poem::IntoResponse;
    let path = req.uri().path();
    let passed_through = path.ends_with("/infer")
        || path.ends_with("/explain")
        || path == "/api/service/v1/function/execute";
    let json = req.content_type().is_some_and(|t| {
        t.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/json")
    });
    if json && !passed_through && req.method() != poem::http::Method::GET {
        let body = req.take_body().into_bytes().await?;
        if let Err(e) = crate::validate::raw::check_json_body(&body) {
            return Ok(super::ApiError::from(e).into_response());
        }
        req.set_body(body);
    }
    Box::pin(ep.call(req))
        .await
        .map(IntoResponse::into_response)
}
