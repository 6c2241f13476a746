//! `[telemetry]`: span export. Off unless `otlp_endpoint` is set; read at startup (a change
//! needs a restart).

use url::Url;

use super::load::Validator;
use super::raw::RawTelemetry;

#[derive(Debug, Clone)]
pub struct Telemetry {
    /// OTLP/HTTP traces URL (`http://collector:4318/v1/traces`): spans are POSTed there as JSON.
    pub otlp_endpoint: Option<Url>,
    /// The `service.name` resource attribute (default `portcullis`).
    pub service_name: String,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            otlp_endpoint: None,
            service_name: "portcullis".into(),
        }
    }
}

impl Validator<'_, '_> {
    pub(super) fn telemetry(&mut self, t: &RawTelemetry) -> Telemetry {
        let mut out = Telemetry::default();
        if let Some(u) = &t.otlp_endpoint {
            out.otlp_endpoint = self.url(u, "telemetry.otlp_endpoint");
        }
        if let Some(n) = &t.service_name {
            out.service_name = n.get_ref().0.clone();
        }
        out
    }
}
