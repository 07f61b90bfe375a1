//! A real OTLP trace receiver in the test process: gRPC (tonic's generated `TraceService`
//! server) and OTLP/HTTP (`POST /v1/traces`, `application/x-protobuf`) on 127.0.0.1, both
//! decoding the protobuf with `opentelemetry-proto`'s types, flattening what they receive into
//! [`Got`] spans, and counting the requests per protocol.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message;

/// One received span, flattened.
#[derive(Debug, Clone)]
pub struct Got {
    pub service: String,
    pub name: String,
    pub kind: i32,
    pub trace: String,
    pub id: String,
    pub parent: String,
    pub attrs: HashMap<String, String>,
}

/// What the receiver was sent, over which protocol.
#[derive(Clone, Default)]
pub struct Collector {
    pub spans: Arc<Mutex<Vec<Got>>>,
    pub grpc: Arc<AtomicUsize>,
    pub http: Arc<AtomicUsize>,
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attrs(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter().map(|kv| (kv.key.clone(), text(&kv.value))).collect()
}

impl Collector {
    fn take(&self, request: ExportTraceServiceRequest) {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.resource_spans {
            let resource = attrs(&rs.resource.map(|r| r.attributes).unwrap_or_default());
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    spans.push(Got {
                        service: service.clone(),
                        name: s.name.clone(),
                        kind: s.kind,
                        trace: hex(&s.trace_id),
                        id: hex(&s.span_id),
                        parent: hex(&s.parent_span_id),
                        attrs: attrs(&s.attributes),
                    });
                }
            }
        }
    }

    pub fn spans(&self) -> Vec<Got> {
        self.spans.lock().unwrap().clone()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.grpc.fetch_add(1, Ordering::SeqCst);
        self.take(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// The receiver: gRPC and HTTP listeners on 127.0.0.1, served by a runtime of its own.
pub struct Receiver {
    pub collector: Collector,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

pub fn start_receiver() -> Receiver {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let collector = Collector::default();
    let (grpc, http) = rt.block_on(async {
        let g = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let h = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addrs = (g.local_addr().unwrap(), h.local_addr().unwrap());
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(g));
        tokio::spawn(server);
        let c = collector.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let c = c.clone();
                async move {
                    use axum::http::StatusCode;
                    let protobuf = headers.get("content-type").is_some_and(|v| v == "application/x-protobuf");
                    match ExportTraceServiceRequest::decode(body) {
                        Ok(r) if protobuf => {
                            c.http.fetch_add(1, Ordering::SeqCst);
                            c.take(r);
                            let body = ExportTraceServiceResponse { partial_success: None }.encode_to_vec();
                            (StatusCode::OK, [("content-type", "application/x-protobuf")], body)
                        }
                        _ => (StatusCode::BAD_REQUEST, [("content-type", "text/plain")], b"not OTLP protobuf".to_vec()),
                    }
                }
            }),
        );
        tokio::spawn(async move { axum::serve(h, app).await.unwrap() });
        addrs
    });
    Receiver { collector, grpc, http, _rt: rt }
}

impl Receiver {
    /// The endpoint for `OTEL_EXPORTER_OTLP_ENDPOINT` of `protocol` (`grpc` or `http/protobuf`).
    pub fn endpoint(&self, protocol: &str) -> String {
        match protocol {
            "grpc" => format!("http://{}", self.grpc),
            _ => format!("http://{}", self.http),
        }
    }

    /// Requests received over gRPC and over HTTP.
    pub fn requests(&self) -> (usize, usize) {
        (self.collector.grpc.load(Ordering::SeqCst), self.collector.http.load(Ordering::SeqCst))
    }
}
