//! The OTLP trace exporter, configured by the standard environment variables and off unless
//! one of them asks for it.
//!
//! | variable | effect |
//! |---|---|
//! | `OTEL_TRACES_EXPORTER` | `otlp`: export (to the default endpoint when none is set); `none`: never |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | where to; setting one turns export on |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` | `http/protobuf` (default) or `grpc` |
//! | `OTEL_EXPORTER_OTLP_HEADERS`, `…_TRACES_HEADERS`, `…_TIMEOUT` | read by `opentelemetry-otlp` (`…_COMPRESSION` too, ignored: no codec is built in) |
//! | `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` | the resource (`service.name` defaults to `kafclaw`) |
//! | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_*` | read by the SDK (sampling, batching) |
//!
//! The endpoint, headers, timeout and compression are read by the `opentelemetry-otlp` crate
//! itself (the generic endpoint gets `/v1/traces` appended for HTTP); this module only decides
//! whether to export and over which protocol. Spans leave in batches from the SDK's own
//! thread; gRPC runs on a small tokio runtime of its own, HTTP through the workspace's
//! `reqwest` blocking client.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

use super::TARGET;

/// Why tracing could not be set up as the environment asks.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A variable has a value this build does not support (`http/json`, a typo).
    #[error("{var}={value}: {reason}")]
    Unsupported {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is supported.
        reason: &'static str,
    },
    /// The exporter could not be built (a malformed endpoint or header).
    #[error("the OTLP exporter: {0}")]
    Build(String),
}

/// The transport of the OTLP exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (`grpc`, default port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`http/protobuf`, default port 4318).
    HttpProtobuf,
}

/// Whether to export, and over which protocol, by the environment `var` reads (the
/// variables of the module's table). `Ok(None)`: export is off.
///
/// Errors: [`TelemetryError::Unsupported`] for an `OTEL_TRACES_EXPORTER` other than `otlp`
/// or `none`, or a protocol other than `grpc` or `http/protobuf`.
pub fn decide(var: impl Fn(&str) -> Option<String>) -> Result<Option<Protocol>, TelemetryError> {
    let set = |name: &str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let wanted = match set("OTEL_TRACES_EXPORTER").as_deref() {
        Some("none") => return Ok(None),
        Some("otlp") => true,
        Some(other) => {
            return Err(TelemetryError::Unsupported {
                var: "OTEL_TRACES_EXPORTER",
                value: other.to_owned(),
                reason: "kafclaw exports traces with `otlp` (or `none`)",
            });
        }
        None => set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT")).is_some(),
    };
    if !wanted {
        return Ok(None);
    }
    let (var_name, value) = match set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
        Some(v) => ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", v),
        None => ("OTEL_EXPORTER_OTLP_PROTOCOL", set("OTEL_EXPORTER_OTLP_PROTOCOL").unwrap_or_default()),
    };
    match value.as_str() {
        "" | "http/protobuf" => Ok(Some(Protocol::HttpProtobuf)),
        "grpc" => Ok(Some(Protocol::Grpc)),
        other => Err(TelemetryError::Unsupported {
            var: var_name,
            value: other.to_owned(),
            reason: "kafclaw speaks OTLP over `grpc` or `http/protobuf`",
        }),
    }
}

/// A running exporter: the tracer provider (batching spans on its own thread) and, for gRPC,
/// the runtime its channel lives on. [`Exporting::shutdown`] flushes what is buffered.
pub struct Exporting {
    provider: SdkTracerProvider,
    protocol: Protocol,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Exporting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporting").field("protocol", &self.protocol).finish_non_exhaustive()
    }
}

impl Exporting {
    /// The exporter the process environment asks for, or `None` when it asks for none.
    /// Must be called outside any tokio runtime (the binary's start).
    ///
    /// Errors: see [`decide`]; [`TelemetryError::Build`] when the crate refuses the endpoint
    /// or the headers.
    pub fn from_env() -> Result<Option<Self>, TelemetryError> {
        match decide(|k| std::env::var(k).ok())? {
            None => Ok(None),
            Some(protocol) => Self::start(protocol).map(Some),
        }
    }

    /// Starts exporting over `protocol` (endpoint and headers from the environment).
    pub fn start(protocol: Protocol) -> Result<Self, TelemetryError> {
        let build = |e: &dyn std::fmt::Display| TelemetryError::Build(e.to_string());
        let (exporter, runtime) = match protocol {
            Protocol::Grpc => {
                // tonic's channel spawns its connection onto the runtime current when it is
                // built; the SDK's batch thread then drives calls through it.
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("kafclaw-otlp")
                    .enable_all()
                    .build()
                    .map_err(|e| build(&e))?;
                let exporter = {
                    let _in = rt.enter();
                    SpanExporter::builder().with_tonic().build().map_err(|e| build(&e))?
                };
                (exporter, Some(rt))
            }
            Protocol::HttpProtobuf => {
                let client = BlockingHttp(
                    reqwest::blocking::Client::builder().timeout(export_timeout()).build().map_err(|e| build(&e))?,
                );
                let exporter = SpanExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_http_client(client)
                    .build()
                    .map_err(|e| build(&e))?;
                (exporter, None)
            }
        };
        let provider = SdkTracerProvider::builder().with_resource(resource()).with_batch_exporter(exporter).build();
        Ok(Self { provider, protocol, runtime })
    }

    /// The protocol spans leave over.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The `tracing` layer that turns spans of [`TARGET`] into OpenTelemetry spans for this
    /// exporter (no other target: library spans and log events stay out).
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("kafclaw"))
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_level(false)
            .with_target(false)
            .with_filter(Targets::new().with_target(TARGET, tracing::Level::INFO))
    }

    /// Exports what is buffered and stops (waits up to the export timeout).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warning: exporting the last traces: {e}");
        }
        if let Some(rt) = self.runtime {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` or `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds), else
/// 10 s: the HTTP client's timeout per export.
fn export_timeout() -> Duration {
    ["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis)
}

/// The resource: the SDK's detectors (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
/// `telemetry.sdk.*`), `service.name` = `kafclaw` when neither names one, `service.version`,
/// and `service.instance.id` = `KAFCLAW_INSTANCE_ID` when set.
fn resource() -> Resource {
    let detected = Resource::builder().build();
    let unnamed = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_none_or(|v| v.as_str().starts_with("unknown_service"));
    let mut builder =
        Resource::builder().with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if unnamed {
        builder = builder.with_service_name("kafclaw");
    }
    if let Ok(id) = std::env::var("KAFCLAW_INSTANCE_ID")
        && !id.is_empty()
    {
        builder = builder.with_attribute(opentelemetry::KeyValue::new("service.instance.id", id));
    }
    builder.build()
}

/// The OTLP/HTTP client: the workspace's `reqwest` (blocking; called from the SDK's batch
/// thread, never from a runtime).
#[derive(Debug)]
struct BlockingHttp(reqwest::blocking::Client);

impl HttpClient for BlockingHttp {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let mut req = self.0.request(parts.method, parts.uri.to_string()).body(body.to_vec());
            for (k, v) in &parts.headers {
                req = req.header(k, v);
            }
            let res = req.send()?;
            let mut out = Response::builder().status(res.status().as_u16());
            for (k, v) in res.headers() {
                out = out.header(k.as_str(), v.as_bytes());
            }
            let body = res.bytes()?;
            Ok(out.body(Bytes::from(body.to_vec()))?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn off_unless_configured_and_the_protocol_by_the_standard_variables() {
        assert_eq!(decide(env(&[])).unwrap(), None);
        assert_eq!(decide(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])).unwrap(), None);
        let http = Some(Protocol::HttpProtobuf);
        assert_eq!(decide(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")])).unwrap(), http);
        assert_eq!(decide(env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/v1/traces")])).unwrap(), http);
        assert_eq!(decide(env(&[("OTEL_TRACES_EXPORTER", "otlp")])).unwrap(), http);
        let none = [("OTEL_TRACES_EXPORTER", "none"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")];
        assert_eq!(decide(env(&none)).unwrap(), None);
        let grpc = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")];
        assert_eq!(decide(env(&grpc)).unwrap(), Some(Protocol::Grpc));
        let signal = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ];
        assert_eq!(decide(env(&signal)).unwrap(), http);
        let json = [("OTEL_TRACES_EXPORTER", "otlp"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")];
        let e = decide(env(&json)).unwrap_err().to_string();
        assert!(e.starts_with("OTEL_EXPORTER_OTLP_PROTOCOL=http/json: "), "{e}");
        assert!(decide(env(&[("OTEL_TRACES_EXPORTER", "zipkin")])).is_err());
    }
}
