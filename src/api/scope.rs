//! The AWS a request works with. Every request gets an [`AwsScope`]: the standard credential
//! chain, or (for an Essedum call that names a connection) the connection's credentials.

use crate::aws::AwsPort;
use std::sync::Arc;

/// Handlers take it as `scope: Data<&AwsScope>`.
#[derive(Clone)]
pub struct AwsScope {
    pub aws: Arc<dyn AwsPort>,
}

/// The middleware: attaches the request's [`AwsScope`].
pub async fn attach<E: poem::Endpoint>(
    ep: Arc<E>,
    mut req: poem::Request,
    default: Arc<dyn AwsPort>,
) -> poem::Result<poem::Response> {
    use poem::IntoResponse;
    req.extensions_mut().insert(AwsScope { aws: default });
    ep.call(req).await.map(IntoResponse::into_response)
}
